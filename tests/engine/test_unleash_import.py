"""The Unleash import beyond the client specification: regex translation, random rollouts, what the
imported states look like to the validator, and odd input."""

import re

import pytest

from feature_flag_client.engine import compile_snapshot, validate_rules
from feature_flag_client.engine.unleash import import_unleash, translate_regex, unleash_context


def feature(name, strategies=None, **extra):
    return {"name": name, "enabled": True, "strategies": strategies or [], **extra}


def snapshot(*features, segments=None):
    imported = import_unleash({"version": 1, "features": list(features), "segments": segments or []})
    return compile_snapshot(imported["flags"], imported["segments"]), imported


@pytest.mark.parametrize("pattern, text, matches", [
    (r"^(?i)abc$", "AbC", True),            # a flag set mid-pattern applies to the rest
    (r"a(?i)b|c", "C", True),               # ... and to the later alternatives
    (r"a(?i)b|c", "A" + "b", False),
    (r"^[[:alpha:]]+$", "AlphaBeta", True),  # POSIX classes
    (r"^[[:alpha:]]+$", "Alpha1", False),
    (r"^abc$", "abc\n", False),             # $ is the end of the text, not before a final newline
    (r"(?m)^foo$", "x\nfoo\ny", True),
    (r"^(?s)a.b$", "a\nb", True),
    (r"a**", "b", True),                    # a repetition of a repetition
    (r"^\x{41}$", "A", True),
])
def test_translated_regex_matches_like_unleash(pattern, text, matches):
    translated = translate_regex(pattern)
    assert translated is not None
    assert bool(re.search(translated, text)) is matches


@pytest.mark.parametrize("pattern", [
    r"^(?=a)b$", r"(?<!a)b", r"^(a)\1$", r"(regex", r"\pL", r"[a-c&&b]", r"[a[b]]", r"(?U)a+", r"a{,3}", r"\Qa\E",
])
def test_regex_unleash_refuses_never_matches(pattern):
    assert translate_regex(pattern) is None


def test_random_rollouts_are_random_not_sticky():
    snap, _ = snapshot(
        feature("zero", [{"name": "gradualRolloutRandom", "parameters": {"percentage": "0"}}]),
        feature("all", [{"name": "gradualRolloutRandom", "parameters": {"percentage": "100"}}]),
        feature("half", [{"name": "gradualRolloutRandom", "parameters": {"percentage": "50"}}]),
        feature("flex", [{"name": "flexibleRollout",
                          "parameters": {"rollout": "50", "stickiness": "random", "groupId": "g"}}]),
    )
    assert not any(snap.evaluate("zero", "u1", {}).enabled for _ in range(200))
    assert all(snap.evaluate("all", "u1", {}).enabled for _ in range(200))
    for key in ("half", "flex"):
        on = sum(snap.evaluate(key, "u1", {}).enabled for _ in range(4000))
        assert 1600 < on < 2400, (key, on)  # the same user gets both answers


def test_imported_states_pass_the_validator():
    snap, imported = snapshot(
        feature("f", [
            {"name": "flexibleRollout", "parameters": {"rollout": "30", "stickiness": "tenant", "groupId": "f"},
             "constraints": [
                 {"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@x.com"], "caseInsensitive": True},
                 {"contextName": "age", "operator": "NUM_EQ", "value": "12", "inverted": True},
                 {"contextName": "version", "operator": "SEMVER_GTE", "value": "1.2.3"},
                 {"contextName": "currentTime", "operator": "DATE_AFTER", "value": "2024-01-01T00:00:00.000Z"},
                 {"contextName": "remoteAddress", "operator": "IN_CIDR", "values": ["10.0.0.0/8"]},
                 {"contextName": "userId", "operator": "REGEX", "value": "^user\\d+$"},
             ],
             "segments": [7],
             "variants": [{"name": "a", "weight": 500, "payload": {"type": "json", "value": "{}"}},
                          {"name": "b", "weight": 500}]},
        ], variants=[{"name": "x", "weight": 1, "overrides": [{"contextName": "userId", "values": ["1"]}]}]),
        segments=[{"id": 7, "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}],
    )
    assert imported["warnings"] == []
    state = imported["flags"][0]
    assert validate_rules(state["rules"], segments=imported["segments"]) == []
    assert state["kind"] == "multivariate" and state["variants"][0]["overrides"] == [{"field": "userId", "values": ["1"]}]


def test_unknown_strategies_and_broken_constraints_never_match_with_a_warning():
    snap, imported = snapshot(
        feature("custom", [{"name": "myCustomStrategy", "parameters": {}}]),
        feature("bad-number", [{"name": "default", "constraints": [
            {"contextName": "n", "operator": "NUM_GT", "value": "many", "inverted": True}]}]),
        feature("no-segment", [{"name": "default", "segments": [404]}]),
    )
    for key in ("custom", "bad-number", "no-segment"):
        assert snap.evaluate(key, "u", {"n": "1"}).enabled is False
    assert len(imported["warnings"]) == 3


def test_context_flattening_prefers_top_level_fields():
    user_id, context = unleash_context({"userId": 7, "environment": "prod",
                                        "properties": {"environment": "dev", "plan": "pro"}})
    assert user_id == "7"
    assert context == {"userId": 7, "environment": "prod", "plan": "pro"}


@pytest.mark.parametrize("document", [None, [], {"features": True}, {"segments": 1},
                                      {"features": [{"name": "f", "strategies": "x", "variants": 3}]},
                                      {"features": [{"name": "f", "dependencies": [{"feature": ["x"]}]}]}])
def test_odd_documents_never_raise(document):
    imported = import_unleash(document)
    compile_snapshot(imported["flags"], imported["segments"]).evaluate("f", "u", {})
