"""validate_rules refuses bad rules at write time with a path and a message a person understands,
and accepts every rule the shared vectors use."""

import json
from pathlib import Path

import pytest

from feature_flag_client.engine import validate_rules, validate_variants

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def custom(field, operator, value=None, **extra):
    rule = {"type": "custom", "field": field, "operator": operator, **extra}
    if value is not None:
        rule["value"] = value
    return rule


def only_error(errors):
    assert len(errors) == 1, errors
    path, message = errors[0]
    assert isinstance(message, str) and len(message) > 10
    assert "Traceback" not in message and "Error(" not in message
    return path, message


# ---- refusals -------------------------------------------------------------------------------

def test_unknown_type__refused_at_type_with_the_choices():
    path, message = only_error(validate_rules([{"type": "country", "operator": "in", "value": ["US"]}]))
    assert path == "rules[0].type"
    assert "unknown rule type 'country'" in message and "geo" in message


def test_missing_type__refused():
    path, message = only_error(validate_rules([{"operator": "in", "value": ["US"]}]))
    assert path == "rules[0].type"


def test_unknown_custom_operator__refused_at_operator_with_the_choices():
    path, message = only_error(validate_rules([custom("plan", "equalz", "premium")]))
    assert path == "rules[0].operator"
    assert "equalz" in message and "equals" in message


@pytest.mark.parametrize("rule", [
    {"type": "geo", "operator": "is", "value": ["US"]},
    {"type": "device", "operator": "equals", "value": "mobile"},
    {"type": "percentage", "operator": "greater_than", "value": 50},
    {"type": "user", "operator": "equals", "value": ["alice"]},
    {"type": "segment", "operator": "all", "value": ["premium"]},
    {"type": "flag", "field": "other", "operator": "on"},
])
def test_unknown_operator_for_each_rule_type__refused(rule):
    path, message = only_error(validate_rules([rule], segments={"premium": []}, flags={"other": []}))
    assert path == "rules[0].operator"
    assert repr(rule["operator"]) in message


@pytest.mark.parametrize("rule, words", [
    (custom("age", "gt", "ten"), "number"),
    (custom("age", "lte", True), "number"),
    (custom("plan", "in", "premium"), "list"),
    (custom("plan", "equals", ["premium"]), "string"),
    (custom("email", "contains", 5), "string"),
    (custom("signup", "before", "soon"), "ISO-8601"),
    (custom("signup", "after", 1717200000), "ISO-8601"),
    (custom("app", "semver_gt", "1.x"), "semantic version"),
    (custom("ip", "in_cidr", ["10.0.0.0/33"]), "CIDR"),
    (custom("ip", "in_cidr", "10.0.0.0/8"), "list"),
    ({"type": "geo", "operator": "in", "value": "US"}, "list"),
    ({"type": "geo", "operator": "in", "value": ["USA"]}, "country code"),
    ({"type": "device", "operator": "is", "value": "phone"}, "mobile"),
    ({"type": "device", "operator": "in", "value": "mobile"}, "list"),
    ({"type": "user", "operator": "in", "value": [1, 2]}, "user ids"),
    ({"type": "percentage", "operator": "less_than", "value": "50"}, "number"),
])
def test_wrong_value_type__refused_at_value(rule, words):
    path, message = only_error(validate_rules([rule]))
    assert path.startswith("rules[0].value")
    assert words.lower() in message.lower(), message


def test_missing_value__refused():
    path, message = only_error(validate_rules([custom("plan", "equals")]))
    assert path == "rules[0].value"


def test_value_on_a_valueless_operator__refused():
    path, message = only_error(validate_rules([custom("plan", "exists", "yes")]))
    assert path == "rules[0].value"
    assert "exists" in message


def test_custom_rule_without_field__refused():
    path, _ = only_error(validate_rules([{"type": "custom", "operator": "equals", "value": "x"}]))
    assert path == "rules[0].field"


@pytest.mark.parametrize("value", [-1, 100.5, 101, 1000])
def test_percentage_outside_0_100__refused(value):
    path, message = only_error(validate_rules([{"type": "percentage", "operator": "less_than", "value": value}]))
    assert path == "rules[0].value"
    assert "0" in message and "100" in message


@pytest.mark.parametrize("value", [0, 0.5, 50, 100])
def test_percentage_inside_0_100__accepted(value):
    assert validate_rules([{"type": "percentage", "operator": "less_than", "value": value}]) == []


@pytest.mark.parametrize("pattern", ["([a-z", "*abc", "a{2,1}", "(?P<x", "\\"])
def test_invalid_regex__refused_with_the_reason(pattern):
    path, message = only_error(validate_rules([custom("email", "matches", pattern)]))
    assert path == "rules[0].value"
    assert "regular expression" in message


def test_regex_longer_than_the_limit__refused():
    path, message = only_error(validate_rules([custom("email", "matches", "a" * 257)]))
    assert path == "rules[0].value"
    assert "256" in message


def test_regex_at_the_limit__accepted():
    assert validate_rules([custom("email", "matches", "a" * 256)]) == []


def test_unknown_segment__refused_at_its_index():
    rule = {"type": "segment", "operator": "in", "value": ["premium", "ghost"]}
    path, message = only_error(validate_rules([rule], segments={"premium": []}))
    assert path == "rules[0].value[1]"
    assert "unknown segment 'ghost'" in message


def test_segment_referring_to_itself__refused():
    segments = {"loop": [{"type": "segment", "operator": "in", "value": ["loop"]}]}
    path, message = only_error(validate_rules(segments["loop"], segments=segments, segment_key="loop"))
    assert path == "rules[0].value[0]"
    assert "cycle" in message


def test_cycle_through_three_segments__refused_on_the_write_that_closes_it():
    segments = {
        "a": [{"type": "segment", "operator": "in", "value": ["b"]}],
        "b": [{"type": "all", "rules": [{"type": "segment", "operator": "not_in", "value": ["c"]}]}],
        "c": [custom("plan", "exists")],
    }
    # When c is rewritten to refer to a (a -> b -> c -> a)
    new_c = [{"type": "not", "rule": {"type": "segment", "operator": "in", "value": ["a"]}}]
    path, message = only_error(validate_rules(new_c, segments=segments, segment_key="c"))
    assert path == "rules[0].rule.value[0]"
    assert "cycle" in message and "'a'" in message


def test_flag_that_is_its_own_prerequisite__refused():
    rules = [{"type": "flag", "field": "checkout", "operator": "enabled"}]
    path, message = only_error(validate_rules(rules, flags={"checkout": rules}, flag_key="checkout"))
    assert path == "rules[0].field"
    assert "own prerequisite" in message


def test_prerequisite_cycle__refused():
    flags = {
        "a": [{"type": "flag", "field": "b", "operator": "enabled"}],
        "b": [{"type": "any", "rules": [{"type": "flag", "field": "c", "operator": "disabled"}]}],
        "c": [],
    }
    # When c gains a prerequisite on a (a -> b -> c -> a)
    rules = [custom("plan", "exists"), {"type": "flag", "field": "a", "operator": "variant_in", "value": ["x"]}]
    path, message = only_error(validate_rules(rules, flags=flags, flag_key="c"))
    assert path == "rules[1].field"
    assert "cycle" in message


def test_unknown_prerequisite_flag__refused():
    rules = [{"type": "flag", "field": "ghost", "operator": "enabled"}]
    path, message = only_error(validate_rules(rules, flags={"checkout": []}, flag_key="checkout"))
    assert path == "rules[0].field"
    assert "unknown flag 'ghost'" in message


@pytest.mark.parametrize("rule, key", [
    ({"type": "geo", "operator": "in", "value": ["US"], "colour": "red"}, "colour"),
    ({"type": "user", "operator": "in", "value": ["a"], "field": "userId"}, "field"),
    (dict(custom("plan", "equals", "x"), case_insensitive=True), "case_insensitive"),
    ({"type": "all", "rules": [], "rule": {}}, "rule"),
])
def test_unknown_keys__refused_at_the_key(rule, key):
    path, message = only_error(validate_rules([rule]))
    assert path == f"rules[0].{key}"
    assert repr(key) in message


def test_variants_in_a_segment__refused():
    rules = [dict(custom("plan", "exists"), variants=[{"key": "a", "weight": 1}])]
    errors = validate_rules(rules, segments={"s": rules}, segment_key="s")
    assert errors and errors[0][0] == "rules[0].variants"


def test_case_insensitive_on_a_numeric_operator__refused():
    path, message = only_error(validate_rules([custom("age", "gt", 3, caseInsensitive=True)]))
    assert path == "rules[0].caseInsensitive"


def test_nested_errors__carry_the_full_path():
    rules = [
        custom("plan", "exists"),
        {"type": "any", "rules": [custom("a", "exists"), {"type": "not", "rule": custom("age", "gt", "old")}]},
    ]
    path, _ = only_error(validate_rules(rules))
    assert path == "rules[1].rules[1].rule.value"


def test_every_error_is_reported_not_just_the_first():
    rules = [{"type": "nope"}, custom("age", "gt", "x"), {"type": "percentage", "operator": "less_than", "value": 150}]
    assert [path for path, _ in validate_rules(rules)] == ["rules[0].type", "rules[1].value", "rules[2].value"]


@pytest.mark.parametrize("rules", ["premium", {"type": "geo"}, [None], [["geo"]], [42]])
def test_rules_that_are_not_a_list_of_objects__refused(rules):
    errors = validate_rules(rules)
    assert errors and all(path.startswith("rules") for path, _ in errors)


@pytest.mark.parametrize("variants, path", [
    ([{"key": "a", "weight": -1}], "variants[0].weight"),
    ([{"key": "a", "weight": "50"}], "variants[0].weight"),
    ([{"key": "a", "weight": 1}, {"key": "a", "weight": 1}], "variants[1].key"),
    ([{"key": "a", "weight": 1, "colour": "red"}], "variants[0].colour"),
    ([{"key": "a", "weight": 0}, {"key": "b", "weight": 0}], "variants"),
])
def test_bad_variants__refused(variants, path):
    errors = validate_variants(variants)
    assert [p for p, _ in errors] == [path]


# ---- every vector rule is valid ---------------------------------------------------------------

# The one deliberately dangling reference in the vectors: a prerequisite on a flag that was deleted
# after the rule was written (write-time validation refuses it; evaluation must still cope).
DANGLING = {("prerequisites", "needs-ghost"), ("prerequisites", "without-ghost")}


def vector_flags():
    for path in sorted(VECTORS.glob("*.json")):
        document = json.loads(path.read_text())
        for state in document["flags"]:
            yield pytest.param(path.stem, document, state, id=f"{path.stem}::{state['key']}")


def vector_segments():
    for path in sorted(VECTORS.glob("*.json")):
        document = json.loads(path.read_text())
        for key in document["segments"]:
            yield pytest.param(document, key, id=f"{path.stem}::segment:{key}")


@pytest.mark.parametrize("name, document, state", list(vector_flags()))
def test_vector_flag_rules__are_valid(name, document, state):
    flags = {other["key"]: other["rules"] for other in document["flags"]}
    errors = validate_rules(state["rules"], segments=document["segments"], flags=flags, flag_key=state["key"])
    if (name, state["key"]) in DANGLING:
        assert [message for _, message in errors] == ["unknown flag 'ghost'"]
    else:
        assert errors == []
    assert validate_variants(state.get("variants", [])) == []


@pytest.mark.parametrize("document, key", list(vector_segments()))
def test_vector_segments__are_valid(document, key):
    assert validate_rules(document["segments"][key], segments=document["segments"], segment_key=key) == []
