"""Unleash's client specification, run through our Unleash import and our engine.

Every JSON file in the specification directory is read: tests/conformance/unleash-client-specification,
the vendored npm package @unleash/client-specification 6.1.0 (see its README; override with
FLAGSITE_CONFORMANCE_DIR). Each file's Unleash `state` is
imported with `import_unleash`, compiled once with `compile_snapshot`, and every case is one test:
`tests` compare `enabled`; `variantTests` compare the variant name ("disabled" when none), payload,
`enabled` and `feature_enabled`. Files that do not apply are listed in EXCLUDED with the reason and
the end-of-run summary names them with their case counts. tests/engine/conftest.py prints the per-file
count of passing cases at the end of the run.
"""

import json
import os
from pathlib import Path

import pytest

from feature_flag_client.engine import compile_snapshot
from feature_flag_client.engine.unleash import import_unleash, unleash_context

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "conformance" / "unleash-client-specification"
SPEC_DIR = Path(os.environ.get("FLAGSITE_CONFORMANCE_DIR") or DEFAULT_DIR)

EXCLUDED = {
    "05-gradual-rollout-random-strategy.json":
        "random rollout: results are random by design, a deterministic comparison does not apply",
    "19-delta-api-hydration.json": "Unleash's delta wire protocol (hydration events), not a features document",
    "20-delta-api-events.json": "Unleash's delta wire protocol (incremental events), not a features document",
}


def _spec_files():
    if not SPEC_DIR.is_dir():
        return []
    return sorted(path for path in SPEC_DIR.glob("*.json") if path.name != "index.json")


def _cases():
    params = []
    for path in _spec_files():
        document = json.loads(path.read_text(encoding="utf-8"))
        if path.name in EXCLUDED:
            continue  # not run; the end-of-run summary lists the file and why
        for kind in ("tests", "variantTests"):
            for case in document.get(kind) or ():
                prefix = "variant: " if kind == "variantTests" else ""
                params.append(pytest.param(
                    path.name, kind, case,
                    id=f"{path.stem}::{prefix}{case['description']}",
                ))
    return params


CASES = _cases()
_SNAPSHOTS = {}


def snapshot_for(name):
    if name not in _SNAPSHOTS:
        document = json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))
        imported = import_unleash(document["state"])
        _SNAPSHOTS[name] = compile_snapshot(
            flags=imported["flags"], segments=imported["segments"], environment="unleash-spec", version=1,
        )
    return _SNAPSHOTS[name]


def test_specification_is_present_and_accounted_for():
    """The directory exists, and every file in it is either run or explicitly excluded."""
    assert SPEC_DIR.is_dir(), f"conformance directory missing: {SPEC_DIR} (set FLAGSITE_CONFORMANCE_DIR)"
    files = _spec_files()
    assert files, f"no specification files in {SPEC_DIR}"
    index = SPEC_DIR / "index.json"
    if index.exists():
        listed = set(json.loads(index.read_text(encoding="utf-8")))
        assert listed == {path.name for path in files}, "index.json and the directory disagree"
    assert set(EXCLUDED) <= {path.name for path in files}, "an excluded file is not in the directory"
    for path in files:
        document = json.loads(path.read_text(encoding="utf-8"))
        count = len(document.get("tests") or ()) + len(document.get("variantTests") or ())
        assert count or path.name in EXCLUDED, f"{path.name} has no cases"


@pytest.mark.parametrize("file_name, kind, case", CASES)
def test_unleash_case(file_name, kind, case):
    snapshot = snapshot_for(file_name)
    user_id, context = unleash_context(case.get("context") or {})
    result = snapshot.evaluate(case["toggleName"], user_id, context)
    expected = case["expectedResult"]
    if kind == "tests":
        assert result.enabled is expected, f"enabled: expected {expected}, got {result!r}"
        return
    has_variant = result.enabled and result.variant is not None
    actual = {
        "name": result.variant if has_variant else "disabled",
        "payload": result.value if has_variant else None,
        "enabled": has_variant,
        "feature_enabled": result.enabled,
    }
    wanted = {
        "name": expected["name"],
        "payload": expected.get("payload"),
        "enabled": expected["enabled"],
        "feature_enabled": expected["feature_enabled"],
    }
    assert actual == wanted, f"{result!r}"
