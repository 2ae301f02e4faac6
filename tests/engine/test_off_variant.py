"""offVariant: the variant a multivariate flag serves while off (docs/rules.md "Off variant")."""

from feature_flag_client.engine import Evaluation, compile_flag, compile_snapshot, validate_off_variant

VARIANTS = [{"key": "new", "weight": 100, "value": "green"}, {"key": "old", "weight": 0, "value": "blue"}]


def state(**fields):
    return {"key": "f", "kind": "multivariate", "enabled": True, "killed": False, "rules": [],
            "variants": VARIANTS, **fields}


def test_disabled_and_killed_results_are_prebuilt_constants_carrying_the_off_variant():
    for fields, reason in (({"enabled": False}, "DISABLED"), ({"killed": True}, "KILLED")):
        compiled = compile_flag(state(offVariant="old", **fields))
        assert compiled.evaluate_compiled.__class__ is Evaluation  # no per-call work
        result = compiled.evaluate("alice")
        assert (result.enabled, result.variant, result.value, result.reason) == (False, "old", "blue", reason)


def test_rule_mismatch_serves_the_off_variant_and_a_match_does_not():
    rules = [{"type": "user", "operator": "in", "value": ["bob"]}]
    snapshot = compile_snapshot([state(offVariant="old", rules=rules)])
    miss = snapshot.evaluate("f", "alice")
    assert (miss.enabled, miss.variant, miss.value, miss.reason, miss.rule) == (False, "old", "blue", "RULE_MISMATCH", 0)
    assert snapshot.evaluate("f", "alice") is miss  # prebuilt: the same object every time
    hit = snapshot.evaluate("f", "bob")
    assert (hit.enabled, hit.variant, hit.value) == (True, "new", "green")


def test_without_off_variant_or_with_an_unknown_one_results_are_unchanged():
    for fields in ({}, {"offVariant": ""}, {"offVariant": None}, {"offVariant": "gone"}):
        result = compile_flag(state(enabled=False, **fields)).evaluate("alice")
        assert (result.variant, result.value, result.reason) == (None, None, "DISABLED")


def test_boolean_flags_ignore_off_variant():
    result = compile_flag({"key": "b", "kind": "boolean", "enabled": False, "rules": [],
                           "offVariant": "old"}).evaluate("alice")
    assert (result.variant, result.value) == (None, False)


def test_explain_agrees_with_evaluate_for_the_off_variant():
    snapshot = compile_snapshot([state(offVariant="old", rules=[{"type": "user", "operator": "in", "value": ["bob"]}])])
    explanation = snapshot.explain("f", "alice")
    assert explanation.evaluation == snapshot.evaluate("f", "alice")
    assert explanation.deciding_rule == "rules[0]"


def test_validate_off_variant():
    assert validate_off_variant("", VARIANTS) == []
    assert validate_off_variant(None, VARIANTS) == []
    assert validate_off_variant("old", VARIANTS) == []
    [(path, message)] = validate_off_variant("gone", VARIANTS)
    assert path == "offVariant" and "unknown variant 'gone'" in message and "'old'" in message
    [(path, message)] = validate_off_variant("old", [], kind="boolean", path="states.production.offVariant")
    assert path == "states.production.offVariant" and "multivariate" in message
    assert validate_off_variant(3, VARIANTS) == [("offVariant", "must be a variant key or empty")]
