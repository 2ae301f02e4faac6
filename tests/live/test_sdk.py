"""The Python SDK (feature_flag_client) against a live web server (granian ASGI): seed usage, errors, retries,
live updates and local evaluation."""

import time

import pytest
from django.contrib.auth.models import Permission

from feature_flag_client import (
    FakeFlagClient,
    FeatureFlagClient,
    FlagsiteConnectionError,
    LocalFeatureFlagClient,
    PermissionDeniedError,
    WebSocketClient,
)
from flags import services
from flags.models import Flag
from tests.live.conftest import SYSTEM
from tests.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def management_token(django_user_model):
    user = django_user_model.objects.create_user("sdk-reader")
    user.user_permissions.add(Permission.objects.get(codename="view_flag"))
    return services.api_key_create(actor=SYSTEM, name="mgmt", kind="management", user=user)[1]


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def test_seed_usage__rest_client__lists_and_evaluates(server, sdk_key, management_token, make_live_flag,
                                                     monkeypatch):
    make_live_flag("sdk-seed", rules=[{"type": "geo", "operator": "in", "value": ["US"]}])
    monkeypatch.setenv("FLAGSITE_API_KEY", management_token)
    client = FeatureFlagClient(base_url=f"{server.http_url}/api")
    flags = client.get_all_flags(environment="production")
    assert "sdk-seed" in [flag["key"] for flag in flags]

    monkeypatch.setenv("FLAGSITE_API_KEY", sdk_key)
    client = FeatureFlagClient(base_url=f"{server.http_url}/api")
    us = client.evaluate_flag(flag_id="sdk-seed", user_id="user-123", context={"country": "US"})
    fr = client.evaluate_flag(flag_id="sdk-seed", user_id="user-123", context={"country": "FR"})
    assert (us["enabled"], us["reason"]) == (True, "TARGETING_MATCH")
    assert (fr["enabled"], fr["reason"]) == (False, "RULE_MISMATCH")
    bulk = client.evaluate_bulk(user_id="user-123", context={"country": "US"}, flag_ids=["sdk-seed"])
    assert bulk["flags"]["sdk-seed"]["enabled"] is True


def test_rest_client__sdk_key_on_management_call__typed_error_with_server_body(server, sdk_key):
    client = FeatureFlagClient(base_url=f"{server.http_url}/api", api_key=sdk_key)
    with pytest.raises(PermissionDeniedError) as error:
        client.create_flag("not-allowed")
    assert error.value.status == 403 and error.value.code == "permission_denied"
    assert error.value.body["error"]["message"]


def test_rest_client__server_unreachable__retries_then_connection_error():
    client = FeatureFlagClient(base_url=f"http://127.0.0.1:{free_port()}/api", api_key="x",
                               retries=2, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(FlagsiteConnectionError):
        client.evaluate_flag("any", "u1")
    assert time.monotonic() - started < 2
    assert client.is_enabled("any", "u1", default=True) is True


def test_seed_usage__websocket_client__callback_gets_action_and_flag_name(server, sdk_key, make_live_flag,
                                                                         monkeypatch):
    monkeypatch.setenv("FLAGSITE_API_KEY", sdk_key)
    updates = []
    ws_client = WebSocketClient(server.ws_url)

    def handle_flag_update(data):
        updates.append(f"Flag {data['flag']['name']} was {data['action']}")

    ws_client.on_flag_update(handle_flag_update)
    ws_client.connect()
    try:
        assert ws_client.wait_connected(5)
        make_live_flag("sdk-ws")
        assert wait_until(lambda: updates)
    finally:
        ws_client.close()
    assert updates == ["Flag sdk-ws name was created"]


def test_websocket_client__server_restarts__reconnects_and_resumes_missed_changes(
        server, sdk_key, make_live_flag):
    flag = make_live_flag("sdk-resume")
    actions = []
    ws_client = WebSocketClient(server.ws_url, api_key=sdk_key, min_backoff=0.05, max_backoff=0.2,
                                daemon=True)
    ws_client.on_flag_update(lambda data: actions.append(data["action"]))
    ws_client.connect()
    assert ws_client.wait_connected(5)
    services.flag_toggle(actor=SYSTEM, flag=flag, environment="production")
    assert wait_until(lambda: actions == ["toggled"])

    ws_client._socket.close()  # the connection drops; a change happens while it is down
    services.flag_kill(actor=SYSTEM, flag=flag, reason="during the outage")
    assert wait_until(lambda: actions == ["toggled", "killed"], timeout=5)
    ws_client.close()


def test_local_client__evaluates_in_process_and_follows_a_kill_within_100ms(server, sdk_key, make_live_flag):
    make_live_flag("sdk-local", rules=[{"type": "percentage", "operator": "less_than", "value": 100}])
    local = LocalFeatureFlagClient(base_url=f"{server.http_url}/api", api_key=sdk_key).start()
    remote = FeatureFlagClient(base_url=f"{server.http_url}/api", api_key=sdk_key)
    try:
        assert local.websocket.wait_connected(5)
        assert local.evaluate_flag("sdk-local", "u1") == remote.evaluate_flag("sdk-local", "u1")
        flag = Flag.objects.get(key="sdk-local")
        services.flag_kill(actor=SYSTEM, flag=flag, reason="bad deploy")
        done = time.perf_counter()
        assert wait_until(lambda: local.evaluate("sdk-local", "u1").reason == "KILLED", timeout=2)
        latency = time.perf_counter() - done
    finally:
        local.close()
    print(f"kill -> local SDK evaluation ms: {latency * 1000:.1f}")
    assert latency < 0.1


def test_local_client__server_goes_away__keeps_serving_last_good_snapshot(server, sdk_key, make_live_flag):
    make_live_flag("sdk-offline")
    local = LocalFeatureFlagClient(base_url=f"{server.http_url}/api", api_key=sdk_key,
                                   poll_interval=0.05).start()
    try:
        server.stop()
        time.sleep(0.3)  # the poller and the WebSocket both fail meanwhile
        result = local.evaluate("sdk-offline", "u1")
        assert (result.enabled, result.reason) == (True, "STATIC")
        assert not local.websocket.connected.is_set()
    finally:
        local.close()


def test_local_client__server_returns__converges_on_changes_made_while_it_was_down(
        server, sdk_key, make_live_flag):
    from tests.servers import start_web

    make_live_flag("sdk-return")
    local = LocalFeatureFlagClient(base_url=f"{server.http_url}/api", api_key=sdk_key,
                                   poll_interval=0.1).start()
    local.websocket.min_backoff, local.websocket.max_backoff = 0.05, 0.2
    restarted = None
    try:
        server.stop()
        services.flag_kill(actor=SYSTEM, flag=Flag.objects.get(key="sdk-return"), reason="while down")
        assert local.evaluate("sdk-return", "u1").reason == "STATIC"  # last good snapshot
        restarted = start_web(port=server.port)
        assert wait_until(lambda: local.evaluate("sdk-return", "u1").reason == "KILLED", timeout=10)
        assert wait_until(local.websocket.connected.is_set, timeout=10)
    finally:
        local.close()
        if restarted is not None:
            restarted.stop()


def test_fake_client__user_code_tested_without_a_server():
    flags = FakeFlagClient({"new-checkout": True, "button-color": "green",
                            "beta": {"rules": [{"type": "user", "operator": "in", "value": ["u1"]}]}})
    assert flags.is_enabled("new-checkout", "anyone")
    assert flags.evaluate_flag("button-color", "anyone")["value"] == "green"
    assert (flags.is_enabled("beta", "u1"), flags.is_enabled("beta", "u2")) == (True, False)
    flags.set("new-checkout", False)
    assert flags.evaluate("new-checkout", "anyone").reason == "DISABLED"
    assert flags.is_enabled("unknown", "anyone") is False


# ---- explain ------------------------------------------------------------------------------------

EXPLAINED_RULES = [
    {"type": "custom", "field": "plan", "operator": "in", "value": ["premium", "gold"]},
    {"type": "percentage", "operator": "less_than", "value": 50},
]


def test_explain__local_snapshot_and_server_explain_alike__sdk_key_refused_before_any_call(
        server, sdk_key, management_token, make_live_flag):
    make_live_flag("sdk-explain", rules=EXPLAINED_RULES)
    local = LocalFeatureFlagClient(base_url=f"{server.http_url}/api", api_key=sdk_key).start(wait=True)
    remote = FeatureFlagClient(base_url=f"{server.http_url}/api", api_key=management_token)
    try:
        for user, context in (("u1", {"plan": "gold"}), ("u2", {"plan": "free"}), (None, {})):
            here = local.explain("sdk-explain", user, context)
            there = remote.explain("sdk-explain", user, context, environments=["production"])
            assert here["environments"]["production"] == there["environments"]["production"]
            assert here["environments"]["production"]["enabled"] == local.is_enabled("sdk-explain", user, context)
        everywhere = remote.explain("sdk-explain", "u1", {"plan": "gold"})
        assert set(everywhere["environments"]) == {"development", "staging", "production"}
    finally:
        local.close()
        remote.close()
    with pytest.raises(PermissionDeniedError, match="management token"):
        FeatureFlagClient(base_url="http://127.0.0.1:9/api", api_key=sdk_key, retries=0).explain("sdk-explain", "u1")


def test_fake_client__explain_without_a_server():
    flags = FakeFlagClient({"beta": {"rules": [{"type": "user", "operator": "in", "value": ["u1"]}]}})

    explained = flags.explain("beta", "u2")["environments"]["test"]

    assert (explained["enabled"], explained["reason"], explained["decidingRule"]) == (False, "RULE_MISMATCH",
                                                                                      "rules[0]")
    assert explained["rules"][0]["message"] == "userId is 'u2' (rule: in ['u1'])"
    assert sum(flags.take_counts().values()) == 0  # an explanation is not an evaluation
