"""flags/results.py: answers built once per shared engine result."""

import pytest
from feature_flag_client.engine.model import FLAG_NOT_FOUND, STATIC, Evaluation
from rest_framework.renderers import JSONRenderer

from flags import results
from flags.results import PerResult


def test_per_result__builds_once_per_shared_result_and_never_keeps_unknown_keys():
    built = []
    per_result = PerResult(lambda result: built.append(result.flag_id) or result.flag_id.upper(), size=2)
    known = Evaluation("known", True, None, True, STATIC, None, "production", 1)

    assert per_result(known) == per_result(known) == "KNOWN"
    for index in range(10):  # made per call by the engine: built each time, kept never
        ghost = Evaluation(f"ghost-{index}", False, None, None, FLAG_NOT_FOUND, None, "production", 1)
        assert per_result(ghost) == f"GHOST-{index}"
    assert per_result(known) == "KNOWN"

    # "known" built once: the unknown keys never filled the (2-entry) table and emptied it
    assert built == ["known"] + [f"ghost-{index}" for index in range(10)]


@pytest.mark.parametrize("data", [
    {"flagId": "ghost", "enabled": False, "variant": None, "value": None, "reason": "FLAG_NOT_FOUND",
     "error": {"code": "FLAG_NOT_FOUND", "message": "Flag 'ghost' not found."}},
    {"flagId": "ümlaut-🚀", "value": {"nested": [1, 2.5, True, None, "line\u2028sep\u2029"]}},
    "plain-key",
])
def test_render__the_same_bytes_as_drfs_renderer(data):
    assert results._render(data) == JSONRenderer().render(data)


def test_render__nan__refused_as_drf_does():
    with pytest.raises(ValueError):
        results._render({"value": float("nan")})
