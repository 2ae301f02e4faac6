"""PostgreSQL stops while a web node (granian ASGI: REST + /ws) and a gRPC node serve real SDK clients
and an operator keeps writing."""

import threading
import time

import httpx
import pytest
from feature_flag_client import FeatureFlagClient
from feature_flag_client.grpc import GrpcFlagClient
from websockets.sync.client import connect as ws_connect

from .conftest import ONLY_U1, assert_answers, audit_actions, flag_row, follow_ws, server_env, verify_audit, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.usefixtures("stores_up")]

STABLE, MOVING = "pg-fault-stable", "pg-fault-moving"
UNAVAILABLE = {"error": {"code": "unavailable", "fields": {},
                         "message": "The database is unavailable; nothing was changed. Retry shortly."}}


class Toggler(threading.Thread):
    """Toggles MOVING on and off as fast as answers come, recording each answer's status."""

    def __init__(self, http):
        super().__init__(daemon=True)
        self.http, self.statuses, self.stop = http, [], threading.Event()

    def run(self):
        enabled = False
        while not self.stop.is_set():
            try:
                status = self.http.patch(f"/flags/{MOVING}/toggle", json={"enabled": enabled}).status_code
            except httpx.TransportError:
                status = "no answer"
            self.statuses.append(status)
            enabled = not enabled
            time.sleep(0.01)


def test_postgres_down__evaluations_go_on__writes_answer_503_and_leave_nothing_half_written__recovery(
        private_postgres, private_redis, site, servers, cleanup):
    """Users keep getting correct evaluations (REST, gRPC, new WebSocket clients) from the snapshot
    while PostgreSQL is down, even after the API key cache expired; writes answer 503 with the
    error shape and Retry-After, and every write either landed whole (state, version, audit entry)
    or not at all; when PostgreSQL returns, both nodes write and propagate again with no restart."""
    env = server_env(private_postgres, private_redis, FLAGS_API_KEY_CACHE_SECONDS="0.5")
    web, grpc_node = servers("web", **env), servers("grpc", **env)
    api = f"{web.http_url}/api"
    admin = cleanup.enter_context(FeatureFlagClient(api, site["token"], environment="production", retries=0))
    sdk = cleanup.enter_context(FeatureFlagClient(api, site["sdk"], retries=0))
    grpc_client = cleanup.enter_context(GrpcFlagClient(grpc_node.target, site["sdk"]))
    http = cleanup.enter_context(httpx.Client(base_url=api, params={"environment": "production"}, timeout=10,
                                              headers={"Authorization": f"Bearer {site['token']}"}))
    admin.create_flag("Stable", key=STABLE, states={"production": {"enabled": True, "rules": ONLY_U1}})
    admin.create_flag("Moving", key=MOVING, states={"production": {"enabled": True, "rules": []}})
    created_version = flag_row(private_postgres, MOVING)[2]
    ws_events = follow_ws(cleanup, web.ws_url, site["sdk"])
    wait_until(lambda: grpc_client.evaluate(STABLE, "u1")["enabled"], what="the gRPC node has the new flags")
    assert_answers(STABLE, sdk.evaluate_flag, grpc_client.evaluate)

    toggler = Toggler(http)
    toggler.start()
    cleanup.callback(toggler.stop.set)
    wait_until(lambda: toggler.statuses.count(200) >= 3, what="toggles before the outage")
    private_postgres.stop()  # fast shutdown: transactions in flight roll back
    cut = len(toggler.statuses) + 1  # the toggle in flight at the stop may still have landed

    response = httpx.get(f"{web.http_url}/api/health", timeout=5)
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["checks"]["cache"], body["error"]["code"]) == ("unavailable", "ok", "unavailable")
    assert body["checks"]["database"] == "unavailable" and "database" in body["error"]["message"], body
    deadline = time.monotonic() + 1.5  # three API key cache lifetimes, many snapshot staleness checks
    while time.monotonic() < deadline:
        assert_answers(STABLE, sdk.evaluate_flag, grpc_client.evaluate)
    with ws_connect(f"{web.ws_url}?key={site['sdk']}", open_timeout=5) as socket:  # a new client is served too
        assert '"type":"hello"' in socket.recv(timeout=5)
    for method, path, body in (("PATCH", f"/flags/{MOVING}/toggle", {"enabled": True}),
                               ("POST", "/flags", {"name": "Born during the outage"})):
        response = http.request(method, path, json=body)
        assert (response.status_code, response.json(), response.headers["Retry-After"]) == (503, UNAVAILABLE, "5")
    toggler.stop.set()
    toggler.join(10)
    assert len(toggler.statuses) > cut and set(toggler.statuses[cut:]) == {503}

    private_postgres.start()

    wait_until(lambda: httpx.get(f"{web.http_url}/api/health", timeout=5).status_code == 200,
               what="health 200 after PostgreSQL returned")
    admin.kill_flag(MOVING, reason="after the outage", environments=["production"])
    _, killed, version = flag_row(private_postgres, MOVING)
    assert killed and ws_events.expect(MOVING, "killed")["flag"]["version"] == version
    wait_until(lambda: grpc_client.evaluate(MOVING, "u1")["reason"] == "KILLED", timeout=5,
               what="the gRPC node sees the write made after the outage")
    assert sdk.evaluate_flag(MOVING, "u1")["reason"] == "KILLED"
    assert_answers(STABLE, sdk.evaluate_flag, grpc_client.evaluate)
    assert ws_events.count("hello") == 1, "the WebSocket client had to reconnect"

    # Nothing half-written: each toggle that landed has its version bump and its audit entry; every
    # toggle answered 200 landed; the ones cut off by the stop landed whole or not at all.
    actions = audit_actions(private_postgres, MOVING)
    landed = actions.count("flag.toggled")
    assert actions[-1] == "flag.killed" and version - created_version == landed + 1
    answered = toggler.statuses.count(200)
    assert answered <= landed <= answered + sum(status != 200 for status in toggler.statuses[:cut])
    verify_audit(private_postgres)
