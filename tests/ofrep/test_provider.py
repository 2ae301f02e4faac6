"""feature_flag_client.openfeature.FlagsiteProvider through the public openfeature-sdk: values of
every type, reasons, variants, metadata, error codes, hooks, context merging and provider events.
Backed by a LocalEvaluator loaded with a snapshot payload (the live server: test_live.py)."""

import datetime
import threading

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.hook import Hook
from openfeature.provider import ProviderStatus

from feature_flag_client import LocalEvaluator
from feature_flag_client.engine import compile_snapshot
from feature_flag_client.openfeature import FlagsiteProvider

COLORS = [{"key": "blue", "weight": 50, "value": "#0000ff"}, {"key": "green", "weight": 50, "value": "#00ff00"}]


def state(key, *, enabled=True, rules=None, killed=False, **extra):
    return {"key": key, "kind": "multivariate" if "variants" in extra else "boolean", "enabled": enabled,
            "killed": killed, "rules": rules or [], "version": 3, **extra}


FLAGS = [
    state("dark-mode"),
    state("geo-us", rules=[{"type": "geo", "operator": "in", "value": ["US"]}]),
    state("off-flag", enabled=False),
    state("killed-flag", killed=True),
    state("rollout", rules=[{"type": "percentage", "operator": "less_than", "value": 50}]),
    state("button-color", variants=COLORS),
    state("limits", variants=[{"key": "gold", "weight": 1, "value": {"max": 10}}]),
    state("tags", variants=[{"key": "list", "weight": 1, "value": ["a", "b"]}]),
    state("ratio", variants=[{"key": "quarter", "weight": 1, "value": 0.25}]),
    state("retries", variants=[{"key": "three", "weight": 1, "value": 3}]),
    state("premium-theme", rules=[{"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}],
          variants=[{"key": "gold", "weight": 1, "value": "gold-theme"}]),
    state("sale", rules=[{"type": "custom", "field": "now", "operator": "after", "value": "2030-01-01T00:00:00Z"}]),
]
PAYLOAD = {"environment": "production", "version": 42, "flags": FLAGS, "segments": {}}


@pytest.fixture
def domain(request):
    name = f"flagsite-{request.node.name}"
    yield name
    api.clear_providers()
    api.clear_hooks()
    api.set_evaluation_context(EvaluationContext())


@pytest.fixture
def client(domain):
    api.set_provider_and_wait(FlagsiteProvider(LocalEvaluator(PAYLOAD)), domain)
    return api.get_client(domain)


def ctx(targeting_key="user-1", **attributes):
    return EvaluationContext(targeting_key, attributes)


# ---- values, reasons, variants --------------------------------------------------------------------


def test_boolean__value_reason_variant_and_metadata(client):
    details = client.get_boolean_details("dark-mode", False, ctx())

    assert (details.value, details.reason, details.variant, details.error_code) == (True, Reason.STATIC, "on", None)
    assert details.flag_metadata == {"environment": "production", "environmentVersion": 42, "enabled": True,
                                     "flagsiteReason": "STATIC", "flagVersion": 3}


def test_boolean__targeting_match_default_and_disabled(client):
    match = client.get_boolean_details("geo-us", False, ctx(country="US"))
    miss = client.get_boolean_details("geo-us", True, ctx(country="FR"))
    off = client.get_boolean_details("off-flag", True, ctx())
    killed = client.get_boolean_details("killed-flag", True, ctx())

    assert (match.value, match.reason, match.variant) == (True, Reason.TARGETING_MATCH, "on")
    assert (miss.value, miss.reason, miss.variant, miss.flag_metadata["rule"]) == (False, Reason.DEFAULT, "off", 0)
    assert (off.value, off.reason) == (False, Reason.DISABLED)
    assert (killed.value, killed.reason, killed.flag_metadata["flagsiteReason"]) == (False, Reason.DISABLED, "KILLED")


def test_string__split_variant_value_matches_the_engine(client):
    engine = compile_snapshot(FLAGS, {}, "production", 42)
    variants = set()
    for n in range(30):
        details = client.get_string_details("button-color", "none", ctx(f"user-{n}"))
        expected = engine.evaluate("button-color", f"user-{n}", {})
        assert (details.value, details.variant, details.reason) == (expected.value, expected.variant, Reason.SPLIT)
        variants.add(details.variant)
    assert variants == {"blue", "green"}


def test_numbers_and_objects(client):
    assert client.get_integer_details("retries", 0, ctx()).value == 3
    assert client.get_float_details("ratio", 0.0, ctx()).value == 0.25
    as_float = client.get_float_details("retries", 0.0, ctx())  # a whole number resolves as a float
    assert as_float.value == 3.0 and isinstance(as_float.value, float) and as_float.error_code is None
    limits = client.get_object_details("limits", {}, ctx())
    assert (limits.value, limits.variant, limits.reason) == ({"max": 10}, "gold", Reason.STATIC)
    assert client.get_object_value("tags", [], ctx()) == ["a", "b"]


def test_multivariate_off__code_default_without_error(client):
    miss = client.get_string_details("premium-theme", "plain", ctx(plan="free"))
    hit = client.get_string_details("premium-theme", "plain", ctx(plan="premium"))

    assert (miss.value, miss.reason, miss.variant, miss.error_code) == ("plain", Reason.DEFAULT, "off", None)
    assert (hit.value, hit.reason, hit.variant) == ("gold-theme", Reason.TARGETING_MATCH, "gold")


def test_datetime_attributes_reach_date_rules(client):
    before = client.get_boolean_value("sale", False, ctx(now=datetime.datetime(2029, 12, 31, 23, 0)))
    after = client.get_boolean_value("sale", False, ctx(now=datetime.datetime(2030, 1, 2, tzinfo=datetime.timezone.utc)))

    assert (before, after) == (False, True)


def test_api_level_context_merges_with_the_invocation_context(client):
    api.set_evaluation_context(EvaluationContext(attributes={"country": "US"}))

    assert client.get_boolean_details("geo-us", False, EvaluationContext("user-9")).reason == Reason.TARGETING_MATCH


# ---- errors ---------------------------------------------------------------------------------------


def test_flag_not_found__default_with_error_code(client):
    details = client.get_boolean_details("ghost", True, ctx())

    assert (details.value, details.reason, details.error_code) == (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    assert "ghost" in details.error_message


@pytest.mark.parametrize("method, key, default", [
    ("get_string_details", "dark-mode", "x"),       # boolean flag read as a string
    ("get_boolean_details", "button-color", False),  # string variant read as a boolean
    ("get_integer_details", "ratio", 0),             # 0.25 is not an integer
    ("get_object_details", "retries", {}),           # a number is not an object
    ("get_float_details", "limits", 0.0),
])
def test_type_mismatch__default_with_error_code(client, method, key, default):
    details = getattr(client, method)(key, default, ctx())

    assert (details.value, details.reason, details.error_code) == (default, Reason.ERROR, ErrorCode.TYPE_MISMATCH)


def test_targeting_key_missing__only_for_flags_that_target_users(client):
    rollout = client.get_boolean_details("rollout", True, EvaluationContext(attributes={"country": "US"}))
    split = client.get_string_details("button-color", "none", EvaluationContext())
    geo = client.get_boolean_details("geo-us", False, EvaluationContext(attributes={"country": "US"}))

    assert (rollout.value, rollout.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)
    assert (split.value, split.error_code) == ("none", ErrorCode.TARGETING_KEY_MISSING)
    assert (geo.value, geo.error_code) == (True, None)


def test_provider_not_ready__until_a_snapshot_loads_then_ready_event(domain):
    evaluator = LocalEvaluator()
    provider = FlagsiteProvider(evaluator)
    ready = threading.Event()
    api.set_provider(provider, domain)
    client = api.get_client(domain)
    client.add_handler(ProviderEvent.PROVIDER_READY, lambda details: ready.set())
    assert _wait(lambda: client.get_provider_status() == ProviderStatus.ERROR)

    before = client.get_boolean_details("dark-mode", False, ctx())
    evaluator.load(PAYLOAD)
    after = client.get_boolean_details("dark-mode", False, ctx())

    assert (before.value, before.error_code) == (False, ErrorCode.PROVIDER_NOT_READY)
    assert ready.wait(2) and client.get_provider_status() == ProviderStatus.READY
    assert (after.value, after.error_code) == (True, None)


def test_configuration_changed_event_names_the_changed_flags(domain):
    evaluator = LocalEvaluator(PAYLOAD)
    api.set_provider_and_wait(FlagsiteProvider(evaluator), domain)
    client = api.get_client(domain)
    changes = []
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changes.append)

    flags = [dict(flag, enabled=False) if flag["key"] == "dark-mode" else flag for flag in FLAGS]
    evaluator.load({**PAYLOAD, "version": 43, "flags": flags})
    evaluator.load({**PAYLOAD, "version": 44, "flags": flags})  # nothing changed: no event

    assert _wait(lambda: len(changes) >= 1)
    assert [event.flags_changed for event in changes] == [["dark-mode"]]
    assert client.get_boolean_details("dark-mode", True, ctx()).reason == Reason.DISABLED


# ---- hooks ----------------------------------------------------------------------------------------


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def before(self, hook_context, hints):
        self.calls.append(("before", hook_context.flag_key, hook_context.evaluation_context.targeting_key))
        return EvaluationContext(attributes={"country": "US"})  # hooks may add context

    def after(self, hook_context, details, hints):
        self.calls.append(("after", details.flag_key, details.value, details.reason, details.variant))

    def error(self, hook_context, exception, hints):
        self.calls.append(("error", hook_context.flag_key, type(exception).__name__))

    def finally_after(self, hook_context, details, hints):
        self.calls.append(("finally", details.flag_key, details.error_code))


def test_hooks_see_details_and_can_add_context(client):
    hook = Recorder()
    client.add_hooks([hook])

    value = client.get_boolean_value("geo-us", False, EvaluationContext("user-5"))
    missing = client.get_boolean_value("ghost", False, EvaluationContext("user-5"))

    assert (value, missing) == (True, False)
    assert hook.calls == [
        ("before", "geo-us", "user-5"),
        ("after", "geo-us", True, Reason.TARGETING_MATCH, "on"),
        ("finally", "geo-us", None),
        ("before", "ghost", "user-5"),
        ("error", "ghost", "FlagNotFoundError"),
        ("finally", "ghost", ErrorCode.FLAG_NOT_FOUND),
    ]


def test_provider_metadata(client):
    assert client.get_metadata().domain.startswith("flagsite-")
    assert client.provider.get_metadata().name == "Flagsite"


def _wait(predicate, timeout=3.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
