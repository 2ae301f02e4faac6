"""flags/results.py: answers built once per shared engine result."""

from feature_flag_client.engine.model import FLAG_NOT_FOUND, STATIC, Evaluation

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
