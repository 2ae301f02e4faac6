"""Properties of the engine that no list of examples can pin down (hypothesis).

- evaluation never raises, whatever JSON a caller sends as context;
- a 50% rollout is half the users, a raised percentage only adds users;
- variant assignment is the same in every process and follows the weights.
"""

import json
import os
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_flag_client.engine import compile_snapshot

REASONS = {"FLAG_NOT_FOUND", "KILLED", "DISABLED", "RULE_MISMATCH", "TARGETING_MATCH", "SPLIT", "STATIC"}
USERS = 100_000


# ---- evaluation never raises ----------------------------------------------------------------

FIELDS = ["plan", "age", "email", "ip", "country", "device", "userAgent", "currentTime", "signupDate",
          "appVersion", "sessionId", "accountId", "userId", "beta", "tags"]

INTERESTING_STRINGS = [
    "", " ", "premium", "PREMIUM", "US", "us", "mobile", "bot", "8.8.8.8", "2001:4860:4860::8888",
    "10.0.0.1", "999.1.1.1", "::ffff:10.0.0.1", "10.0.0.0/8", "1.2.3", "1.2.3-beta.1+build", "v1",
    "2024-06-01", "2024-06-01T00:00:00Z", "2024-06-01T00:00:00+25:00", "0000-00-00", "1e309", "-0",
    "NaN", "inf", "12", "12.5", "a@example.com", "\x00", "\ud7ff", "é", "日本",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "x" * 5000,
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(INTERESTING_STRINGS)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
contexts = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=8)


def custom(field, operator, value=None, **extra):
    rule = {"type": "custom", "field": field, "operator": operator, **extra}
    if value is not None:
        rule["value"] = value
    return rule


TWO = [{"key": "a", "weight": 50, "value": "A"},
       {"key": "b", "weight": 50, "value": {"b": [1]}, "overrides": [{"field": "plan", "values": ["premium", 3]}]}]

RULES = [
    {"type": "geo", "operator": "in", "value": ["US", "CA"]},
    {"type": "geo", "operator": "not_in", "value": ["RU"]},
    {"type": "device", "operator": "is", "value": "mobile"},
    {"type": "device", "operator": "is_not", "value": "bot"},
    {"type": "device", "operator": "in", "value": ["tablet", "desktop"]},
    {"type": "device", "operator": "not_in", "value": ["bot"]},
    {"type": "percentage", "operator": "less_than", "value": 50},
    {"type": "percentage", "operator": "less_than", "value": 50, "field": "accountId"},
    {"type": "percentage", "operator": "less_than", "value": 50, "field": "default", "salt": "s"},
    {"type": "user", "operator": "in", "value": ["alice"]},
    {"type": "user", "operator": "not_in", "value": ["bob"]},
    {"type": "segment", "operator": "in", "value": ["premium"]},
    {"type": "segment", "operator": "not_in", "value": ["nested"]},
    {"type": "flag", "field": "f-custom-equals", "operator": "enabled"},
    {"type": "flag", "field": "f-custom-in", "operator": "disabled"},
    {"type": "flag", "field": "mv", "operator": "variant_in", "value": ["b"]},
    {"type": "all", "rules": [custom("plan", "exists"), custom("age", "gt", 1)]},
    {"type": "any", "rules": [custom("plan", "not_exists"), custom("email", "ends_with", ".com")]},
    {"type": "not", "rule": custom("tags", "contains", ["x", "y"])},
]
for field in ["plan", "tags", "age"]:
    RULES += [
        custom(field, "equals", "premium"), custom(field, "equals", 3), custom(field, "equals", True),
        custom(field, "not_equals", "free", caseInsensitive=True),
        custom(field, "in", ["premium", "gold"]), custom(field, "in", [1, 2.5], caseInsensitive=True),
        custom(field, "not_in", ["free", 0]),
        custom(field, "contains", "rem"), custom(field, "starts_with", ["p", "g"], caseInsensitive=True),
        custom(field, "ends_with", "um"),
        custom(field, "matches", r"^p.*m$"), custom(field, "matches", "PREM", caseInsensitive=True),
        custom(field, "gt", 10), custom(field, "gte", 10.5), custom(field, "lt", -3), custom(field, "lte", 0),
        custom(field, "exists"), custom(field, "not_exists"),
    ]
RULES += [
    custom("currentTime", "before", "2030-01-01T00:00:00Z"), custom("currentTime", "after", "2020-01-01"),
    custom("signupDate", "before", "2024-01-01"), custom("signupDate", "after", "2024-01-01T10:00:00+02:00"),
    custom("appVersion", "semver_eq", "1.2.3"), custom("appVersion", "semver_gt", "1.0.0-beta"),
    custom("appVersion", "semver_lt", "2.0.0"),
    custom("ip", "in_cidr", ["10.0.0.0/8", "2001:db8::/32", "192.168.0.1"]),
    custom("userId", "starts_with", "a"), custom("sessionId", "matches", r"\d+"),
]

FLAGS = [{"key": "f-custom-equals", "kind": "boolean", "enabled": True, "rules": [custom("plan", "equals", "x")]},
         {"key": "f-custom-in", "kind": "boolean", "enabled": True, "rules": [custom("plan", "in", ["x"])]},
         {"key": "mv", "kind": "multivariate", "enabled": True, "rules": [], "variants": TWO},
         {"key": "mv-sticky", "kind": "multivariate", "enabled": True, "rules": [], "variants": TWO,
          "stickiness": "accountId"},
         {"key": "mv-default", "kind": "multivariate", "enabled": True, "rules": [], "variants": TWO,
          "stickiness": "default"},
         {"key": "mv-rule-variants", "kind": "multivariate", "enabled": True, "variants": TWO, "rules": [
             {"type": "any", "rules": [dict(custom("plan", "exists"), variants=TWO, stickiness="sessionId"),
                                       dict(custom("age", "gt", 3), variants=TWO[:1])]}]}]
FLAGS += [{"key": f"rule-{index}", "kind": "boolean", "enabled": True, "rules": [rule]}
          for index, rule in enumerate(RULES)]
SEGMENTS = {"premium": [custom("plan", "equals", "premium")],
            "nested": [{"type": "segment", "operator": "in", "value": ["premium"]}, custom("age", "gte", 18)]}
EVERY_OPERATOR = compile_snapshot(flags=FLAGS, segments=SEGMENTS, environment="props", version=1)


def test_every_operator_is_covered():
    custom_operators = {r["operator"] for r in RULES if r["type"] == "custom"}
    assert custom_operators == {
        "equals", "not_equals", "in", "not_in", "contains", "starts_with", "ends_with", "matches",
        "gt", "gte", "lt", "lte", "before", "after", "semver_eq", "semver_gt", "semver_lt", "in_cidr",
        "exists", "not_exists",
    }
    assert {r["type"] for r in RULES} == {"geo", "device", "percentage", "user", "segment", "flag",
                                          "all", "any", "not", "custom"}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_id=st.none() | st.text(max_size=20) | st.sampled_from(["alice", "bob"]), context=contexts)
def test_evaluate__any_json_context__never_raises(user_id, context):
    for flag in FLAGS:
        result = EVERY_OPERATOR.evaluate(flag["key"], user_id, context)
        assert result.enabled in (True, False)
        assert result.reason in REASONS
        json.dumps(result.as_dict())


@settings(max_examples=100, deadline=None)
@given(user_id=json_values, context=json_values)
def test_evaluate__any_json_user_id_and_context_shape__never_raises(user_id, context):
    for flag in FLAGS:
        assert EVERY_OPERATOR.evaluate(flag["key"], user_id, context).reason in REASONS


# ---- percentage rollout ---------------------------------------------------------------------

def rollout(key, percent, salt=None):
    state = {"key": key, "kind": "boolean", "enabled": True,
             "rules": [{"type": "percentage", "operator": "less_than", "value": percent}]}
    if salt is not None:
        state["salt"] = salt
    return state


salts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=24)


@settings(max_examples=5, deadline=None, derandomize=True)
@given(salt=salts, id_prefix=st.sampled_from(["user-", "", "u_", "acct:"]))
def test_rollout_50__100k_ids__within_half_a_percent_of_half(salt, id_prefix):
    snapshot = compile_snapshot(flags=[rollout("half", 50, salt)])
    evaluate = snapshot.evaluate

    on = sum(evaluate("half", f"{id_prefix}{i}", {}).enabled for i in range(USERS))

    assert abs(on / USERS - 0.5) <= 0.005, on


@settings(max_examples=300, deadline=None)
@given(user_id=st.text(min_size=1, max_size=30), salt=salts,
       low=st.integers(min_value=0, max_value=100), high=st.integers(min_value=0, max_value=100))
def test_raising_a_percentage__never_turns_a_user_off(user_id, salt, low, high):
    low, high = sorted((low, high))
    snapshot = compile_snapshot(flags=[rollout("low", low, salt), rollout("high", high, salt)])

    if snapshot.evaluate("low", user_id, {}).enabled:
        assert snapshot.evaluate("high", user_id, {}).enabled


def test_raising_a_percentage__every_step_adds_users_over_10k_ids():
    ids = [f"user-{i}" for i in range(10_000)]
    before = set()
    for percent in range(0, 101, 5):
        snapshot = compile_snapshot(flags=[rollout("steps", percent)])
        now = {i for i in ids if snapshot.evaluate("steps", i, {}).enabled}
        assert before <= now
        before = now
    assert len(before) == len(ids)


# ---- variants -------------------------------------------------------------------------------

VARIANT_SCRIPT = """
import json, sys
from feature_flag_client.engine import compile_snapshot
flags = json.loads(sys.argv[1])
snapshot = compile_snapshot(flags=flags)
out = {f["key"]: [snapshot.evaluate(f["key"], f"user-{i}", {"accountId": f"acct-{i % 97}"}).variant
                  for i in range(int(sys.argv[2]))] for f in flags}
print(json.dumps(out))
"""


def multivariate(key, weights, **extra):
    return {"key": key, "kind": "multivariate", "enabled": True, "rules": [],
            "variants": [{"key": f"v{i}", "weight": w, "value": i} for i, w in enumerate(weights)], **extra}


def test_variant_assignment__is_the_same_in_another_process():
    flags = [multivariate("ab", [50, 50]), multivariate("three", [10, 30, 60], salt="exp-7"),
             multivariate("by-account", [1, 1, 1, 1], stickiness="accountId")]
    count = 3000
    snapshot = compile_snapshot(flags=flags)
    here = {f["key"]: [snapshot.evaluate(f["key"], f"user-{i}", {"accountId": f"acct-{i % 97}"}).variant
                       for i in range(count)] for f in flags}

    for hash_seed in ("0", "12345"):
        done = subprocess.run(
            [sys.executable, "-c", VARIANT_SCRIPT, json.dumps(flags), str(count)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert json.loads(done.stdout) == here
    assert set(here["ab"]) == {"v0", "v1"}


@settings(max_examples=4, deadline=None, derandomize=True)
@given(weights=st.lists(st.integers(min_value=1, max_value=1000), min_size=2, max_size=5), salt=salts)
def test_variant_split__100k_ids__within_one_percent_of_the_weights(weights, salt):
    snapshot = compile_snapshot(flags=[multivariate("split", weights, salt=salt)])
    evaluate = snapshot.evaluate
    counts = dict.fromkeys((f"v{i}" for i in range(len(weights))), 0)

    for i in range(USERS):
        counts[evaluate("split", f"user-{i}", {}).variant] += 1

    total = sum(weights)
    for i, weight in enumerate(weights):
        assert abs(counts[f"v{i}"] / USERS - weight / total) <= 0.01, (weights, counts)


def test_variant_split__fixed_weights_10_30_60():
    snapshot = compile_snapshot(flags=[multivariate("fixed", [10, 30, 60])])
    counts = {"v0": 0, "v1": 0, "v2": 0}
    for i in range(USERS):
        counts[snapshot.evaluate("fixed", f"id-{i}", {}).variant] += 1
    assert abs(counts["v0"] / USERS - 0.10) <= 0.01
    assert abs(counts["v1"] / USERS - 0.30) <= 0.01
    assert abs(counts["v2"] / USERS - 0.60) <= 0.01
