"""Against a live web server (granian ASGI): the public OpenFeature SDK with the public OFREP provider
(openfeature-provider-ofrep), and our own provider following the server over its WebSocket."""

import time

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from feature_flag_client.openfeature import FlagsiteProvider
from flags import services
from flags.models import Flag
from tests.servers import start_web

from .data import COLORS, SYSTEM, build_flags

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
COLOR_VALUES = {variant["key"]: variant["value"] for variant in COLORS}


@pytest.fixture
def live_flags(transactional_db):
    build_flags()


@pytest.fixture
def domains():
    yield
    api.clear_providers()
    api.clear_hooks()


def ofrep_client(server, key, name, *, header="Authorization"):
    value = f"Bearer {key}" if header == "Authorization" else key
    provider = OFREPProvider(server.http_url, headers_factory=lambda: {header: value})
    api.set_provider_and_wait(provider, name)
    return api.get_client(name)


def test_ofrep_provider__boolean_and_multivariate_flags(server, sdk_key, live_flags, domains):
    client = ofrep_client(server, sdk_key, "ofrep-values")

    static = client.get_boolean_details("dark-mode", False, EvaluationContext("user-1"))
    geo = client.get_boolean_details("geo-us", False, EvaluationContext("user-1", {"country": "US"}))
    geo_miss = client.get_boolean_details("geo-us", True, EvaluationContext("user-1", {"country": "FR"}))
    killed = client.get_boolean_details("killed-flag", True, EvaluationContext("user-1"))
    color = client.get_string_details("button-color", "none", EvaluationContext("user-1"))
    limits = client.get_object_details("limits", {}, EvaluationContext("user-1"))
    retries = client.get_integer_details("retries", 0, EvaluationContext("user-1"))
    ratio = client.get_float_details("ratio", 0.0, EvaluationContext("user-1"))
    theme = client.get_string_details("premium-theme", "plain", EvaluationContext("user-1", {"plan": "free"}))

    assert (static.value, static.reason, static.variant) == (True, Reason.STATIC, "on")
    assert static.flag_metadata["environment"] == "production"
    assert (geo.value, geo.reason) == (True, Reason.TARGETING_MATCH)
    assert (geo_miss.value, geo_miss.reason, geo_miss.variant) == (False, Reason.DEFAULT, "off")
    assert (killed.value, killed.reason, killed.flag_metadata["flagsiteReason"]) == (False, Reason.DISABLED, "KILLED")
    assert color.reason == Reason.SPLIT and color.value == COLOR_VALUES[color.variant]
    assert (limits.value, limits.variant) == ({"max": 10, "tier": "gold"}, "gold")
    assert (retries.value, ratio.value) == (3, 0.25)
    # a multivariate flag that is off sends no value: the provider serves the code default
    assert (theme.value, theme.reason, theme.variant, theme.error_code) == ("plain", Reason.DEFAULT, "off", None)


def test_ofrep_provider__unknown_flag_missing_targeting_key_and_bad_key(server, sdk_key, live_flags, domains):
    client = ofrep_client(server, sdk_key, "ofrep-errors")
    bad = ofrep_client(server, "sdk_production_wrong", "ofrep-bad-key")

    unknown = client.get_boolean_details("ghost", True, EvaluationContext("user-1"))
    no_key = client.get_boolean_details("rollout", True, EvaluationContext(attributes={"country": "US"}))
    unauthorized = bad.get_boolean_details("dark-mode", False, EvaluationContext("user-1"))

    assert (unknown.value, unknown.reason, unknown.error_code) == (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    assert "ghost" in unknown.error_message
    assert (no_key.value, no_key.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)
    assert "targetingKey" in no_key.error_message
    assert (unauthorized.value, unauthorized.error_code) == (False, ErrorCode.GENERAL)
    assert unauthorized.error_message == "unauthorized"  # how the provider reports a 401


def test_ofrep_provider__x_api_key_header_and_a_change_is_seen(server, sdk_key, live_flags, domains):
    client = ofrep_client(server, sdk_key, "ofrep-x-api-key", header="X-API-Key")
    assert client.get_boolean_value("dark-mode", False, EvaluationContext("u")) is True

    services.flag_kill(actor=SYSTEM, flag=Flag.objects.get(key="dark-mode"), reason="incident")

    deadline = time.monotonic() + 5
    while client.get_boolean_value("dark-mode", True, EvaluationContext("u")) is not False:
        assert time.monotonic() < deadline, "the kill never reached OFREP"
        time.sleep(0.05)


def test_ofrep_provider__429_pauses_evaluation_until_retry_after(transactional_db, sdk_key, domains):
    build_flags()
    server = start_web(FLAGS_OFREP_RATE_LIMIT="2/h")  # per minute, a run crossing a minute got a fresh window
    try:
        client = ofrep_client(server, sdk_key, "ofrep-429")
        first = [client.get_boolean_value("dark-mode", False, EvaluationContext("u")) for _ in range(2)]
        limited = client.get_boolean_details("dark-mode", False, EvaluationContext("u"))
        paused = client.get_boolean_details("dark-mode", False, EvaluationContext("u"))
    finally:
        server.stop()

    assert first == [True, True]
    assert (limited.value, limited.error_code) == (False, ErrorCode.GENERAL)
    assert "Rate limited" in limited.error_message
    assert "paused" in paused.error_message  # the provider honoured Retry-After without calling again


def test_flagsite_provider__live_snapshot_and_kill_switch_event(server, sdk_key, live_flags, domains):
    provider = FlagsiteProvider(base_url=f"{server.http_url}/api", api_key=sdk_key, poll_interval=60)
    api.set_provider_and_wait(provider, "flagsite-live")
    client = api.get_client("flagsite-live")
    changed = []
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, changed.append)
    try:
        color = client.get_string_details("button-color", "none", EvaluationContext("user-1"))
        ofrep = ofrep_client(server, sdk_key, "ofrep-compare").get_string_details(
            "button-color", "none", EvaluationContext("user-1"))
        assert (color.value, color.variant, color.reason) == (ofrep.value, ofrep.variant, ofrep.reason)
        assert client.get_boolean_value("dark-mode", False, EvaluationContext("u")) is True

        services.flag_kill(actor=SYSTEM, flag=Flag.objects.get(key="dark-mode"), reason="incident")

        deadline = time.monotonic() + 5
        while not changed:
            assert time.monotonic() < deadline, "no PROVIDER_CONFIGURATION_CHANGED after a kill"
            time.sleep(0.02)
        details = client.get_boolean_details("dark-mode", True, EvaluationContext("u"))
        assert "dark-mode" in changed[0].flags_changed
        assert (details.value, details.reason, details.flag_metadata["flagsiteReason"]) == (
            False, Reason.DISABLED, "KILLED")
    finally:
        api.shutdown()
