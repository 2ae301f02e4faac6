"""The shared vectors in tests/vectors/*.json, run straight through the engine.

The same files run later through REST, gRPC and the SDK; see tests/vectors/README.md for the format.
"""

import json
from pathlib import Path

import pytest

from feature_flag_client.engine import compile_snapshot

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
EXPECTED_FIELDS = ("enabled", "variant", "value", "reason", "rule")


def load_vectors():
    files = sorted(VECTORS.glob("*.json"))
    cases = []
    for path in files:
        document = json.loads(path.read_text())
        for case in document["cases"]:
            cases.append(pytest.param(path.stem, document, case, id=f"{path.stem}::{case['description']}"))
    return files, cases


FILES, CASES = load_vectors()


@pytest.fixture(scope="module")
def snapshots():
    cache = {}

    def get(name, document):
        if name not in cache:
            cache[name] = compile_snapshot(
                flags=document["flags"], segments=document["segments"], environment="vectors", version=1,
            )
        return cache[name]

    return get


def test_vectors__at_least_200_cases_in_at_least_10_files():
    assert len(CASES) >= 200, len(CASES)
    assert len(FILES) >= 10


@pytest.mark.parametrize("name, document, case", CASES)
def test_vector(name, document, case, snapshots):
    # Given the file's flags and segments compiled into one snapshot
    snapshot = snapshots(name, document)

    # When the case is evaluated through the public API, by flag key
    result = snapshot.evaluate(case["flagId"], case["userId"], case["context"])

    # Then every expected field matches (rule is only given for RULE_MISMATCH)
    got = result.as_dict()
    expected = case["expected"]
    assert got["flagId"] == case["flagId"]
    mismatched = {
        field: {"expected": expected[field], "got": got[field]}
        for field in EXPECTED_FIELDS
        if field in expected and (got[field] != expected[field] or type(got[field]) is not type(expected[field]))
    }
    assert not mismatched, f"{case['description']}: {mismatched}"
