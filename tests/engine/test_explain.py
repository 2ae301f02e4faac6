"""Explain mode: the same answer as evaluate for every shared vector, a deciding rule consistent
with the reason, what each rule looked at, and nothing changed on the normal path."""

import json
from pathlib import Path

import pytest

from feature_flag_client.engine import compile_snapshot

from .explain_checks import check

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
DOCUMENTS = {path.stem: json.loads(path.read_text()) for path in sorted(VECTORS.glob("*.json"))}
CASES = [pytest.param(name, case, id=f"{name}::{case['description']}")
         for name, document in DOCUMENTS.items() for case in document["cases"]]


@pytest.fixture(scope="module")
def snapshots():
    return {name: compile_snapshot(flags=document["flags"], segments=document["segments"], environment="vectors",
                                   version=1) for name, document in DOCUMENTS.items()}


@pytest.mark.parametrize("name, case", CASES)
def test_explain__every_vector__same_answer_and_a_consistent_deciding_rule(name, case, snapshots):
    document = DOCUMENTS[name]
    snapshot = snapshots[name]
    state = next((flag for flag in document["flags"] if flag["key"] == case["flagId"]), None)

    explained = snapshot.explain(case["flagId"], case["userId"], case["context"]).as_dict()
    evaluated = snapshot.evaluate(case["flagId"], case["userId"], case["context"]).as_dict()

    assert check(explained, evaluated, state, document["segments"]) == []
    for field in ("enabled", "variant", "reason"):
        assert explained[field] == case["expected"][field]
    json.dumps(explained)  # the REST API and the SDK send it as it is


def snapshot_of(*flags, segments=None):
    return compile_snapshot(flags=list(flags), segments=segments or {}, environment="production", version=7)


def boolean(key, rules, **extra):
    return {"key": key, "kind": "boolean", "enabled": True, "rules": rules, **extra}


def test_rule_mismatch__names_the_attribute_and_the_value_seen():
    snapshot = snapshot_of(boolean("f", [
        {"type": "geo", "operator": "in", "value": ["US"]},
        {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"},
    ]))

    explained = snapshot.explain("f", "u1", {"country": "US", "plan": "free"})

    assert (explained.reason, explained.deciding_rule) == ("RULE_MISMATCH", "rules[1]")
    first, second = explained.rules
    assert (first["matched"], first["attribute"], first["value"]) == (True, "country", "US")
    assert (second["matched"], second["attribute"], second["value"]) == (False, "plan", "free")
    assert second["message"] == "plan is 'free' (rule: equals 'premium')"
    assert explained.summary.startswith("rules[1] did not match: plan is 'free'")


def test_rollout__names_the_bucket_of_the_engine_formula():
    from feature_flag_client.engine import bucket

    snapshot = snapshot_of(boolean("f", [{"type": "percentage", "operator": "less_than", "value": 30}]))
    users = {True: None, False: None}
    for i in range(100):
        users[bucket("f", f"u{i}") <= 30] = users[bucket("f", f"u{i}") <= 30] or f"u{i}"

    out = snapshot.explain("f", users[False], {})
    inside = snapshot.explain("f", users[True], {})

    assert out.reason == "RULE_MISMATCH" and out.deciding_rule == "rules[0]"
    assert out.rules[0]["message"] == f"not in the 30% rollout (bucket {bucket('f', users[False])} > 30, by userId)"
    assert inside.reason == "SPLIT" and inside.deciding_rule == "rules[0]"
    assert "in the 30% rollout (bucket" in inside.rules[0]["message"]
    assert snapshot.explain("f", None, {}).rules[0]["message"] == "not in the 30% rollout: no userId to bucket by"


def test_segment_and_prerequisite__why_not_in_words_with_nested_paths():
    snapshot = snapshot_of(
        boolean("parent", [], enabled=False),
        boolean("child", [
            {"type": "any", "rules": [
                {"type": "segment", "operator": "in", "value": ["beta"]},
                {"type": "not", "rule": {"type": "user", "operator": "in", "value": ["u1"]}},
            ]},
        ]),
        boolean("needs-parent", [{"type": "flag", "field": "parent", "operator": "enabled"}]),
        segments={"beta": {"plan": "beta"}},
    )

    child = snapshot.explain("child", "u1", {"plan": "free"})
    needs = snapshot.explain("needs-parent", "u1", {})

    assert child.deciding_rule == "rules[0]"
    (any_,) = child.rules
    segment_rule, not_rule = any_["rules"]
    assert segment_rule["path"] == "rules[0].rules[0]"
    assert segment_rule["message"] == "segment 'beta' did not match"
    condition = segment_rule["rules"][0]["rules"][0]
    assert condition["path"] == "segments.beta.conditions[0]"
    assert (condition["attribute"], condition["value"], condition["matched"]) == ("plan", "free", False)
    assert not_rule["path"] == "rules[0].rules[1]"
    assert not_rule["rules"][0]["path"] == "rules[0].rules[1].rule"
    assert needs.rules[0]["message"] == "prerequisite 'parent' was off (DISABLED); rule wants it to be on"
    assert needs.rules[0]["value"] == {"enabled": False, "variant": None, "reason": "DISABLED"}


def test_rule_variants__the_rule_that_chose_the_variant_decides():
    snapshot = snapshot_of({
        "key": "mv", "kind": "multivariate", "enabled": True,
        "variants": [{"key": "a", "weight": 1, "value": "A"}, {"key": "b", "weight": 1, "value": "B"}],
        "rules": [
            {"type": "custom", "field": "plan", "operator": "exists"},
            {"type": "any", "rules": [
                {"type": "user", "operator": "in", "value": ["nobody"]},
                {"type": "custom", "field": "plan", "operator": "equals", "value": "gold",
                 "variants": [{"key": "b", "weight": 1, "value": "B"}]},
            ]},
        ],
    })

    explained = snapshot.explain("mv", "u1", {"plan": "gold"})

    assert (explained.variant, explained.reason) == ("b", "TARGETING_MATCH")
    assert explained.deciding_rule == "rules[1].rules[1]"


def test_killed_disabled_unknown__no_deciding_rule():
    snapshot = snapshot_of(boolean("k", [{"type": "user", "operator": "in", "value": ["u"]}], killed=True),
                           boolean("d", [], enabled=False))

    for key, reason in (("k", "KILLED"), ("d", "DISABLED"), ("ghost", "FLAG_NOT_FOUND")):
        explained = snapshot.explain(key, "u", {})
        assert (explained.reason, explained.deciding_rule, explained.rules) == (reason, None, [])


def test_explain__leaves_the_normal_path_alone__no_results_kept_no_hits_counted():
    flags = [boolean("parent", [{"type": "percentage", "operator": "less_than", "value": 50}]),
             boolean("f", [{"type": "segment", "operator": "in", "value": ["s"]},
                           {"type": "flag", "field": "parent", "operator": "disabled"},
                           {"type": "percentage", "operator": "less_than", "value": 50}])]
    snapshot = compile_snapshot(flags=flags, segments={"s": {"plan": "x"}}, environment="e", version=1,
                                counting=True)
    results, table = list(snapshot.results), dict(snapshot.table)

    for i in range(20):
        snapshot.explain("f", f"u{i}", {"plan": "x"})
        snapshot.explain("ghost", f"u{i}", {})

    assert snapshot.results == results and snapshot.table == table
    assert sum(snapshot.hit_counts().values()) == 0
