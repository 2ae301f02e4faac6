"""Redis hangs (SIGSTOP: connections stay open, nothing answers) while a web node takes writes.

A refused connection fails at once; a hung one fails only after the client's socket timeout (1 s
for the cache, 15 s for the channel layer). After-commit work must not make a committed write's
response wait for it: a client that gives up and retries a toggle would flip the flag back.
"""

import os
import signal
import threading
import time

import httpx
import pytest
from feature_flag_client.grpc import GrpcFlagClient

from .conftest import audit_actions, flag_row, follow_grpc, follow_ws, server_env, verify_audit, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.usefixtures("stores_up")]

FLAG = "redis-hung"
WRITE_BOUND = 3.0  # seconds; a hung Redis held the response 15-25 s before after-commit work moved off it


class Evaluator(threading.Thread):
    """Evaluates FLAG in a loop (load on the node while Redis hangs), keeping each status."""

    def __init__(self, url, key):
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        self.statuses, self.stop = [], threading.Event()

    def run(self):
        with self.http:
            while not self.stop.is_set():
                response = self.http.post("/api/evaluate", json={"flagId": FLAG, "userId": "u1"})
                self.statuses.append(response.status_code)


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_redis_hung__writes_answer_at_once_and_commit_once__changes_arrive_after_it_resumes(
        private_postgres, private_redis, site, servers, cleanup):
    web = servers("web", **server_env(private_postgres, private_redis, FLAGS_WS_PING_SECONDS=1))
    # Re-reads versions only every few minutes: only a notice over Redis brings it a change promptly.
    grpc_node = servers("grpc", **server_env(private_postgres, private_redis, FLAGS_MAX_STALENESS_MS=600_000))
    admin = cleanup.enter_context(httpx.Client(base_url=f"{web.http_url}/api", timeout=60,
                                               headers={"Authorization": f"Bearer {site['token']}"}))
    sdk = cleanup.enter_context(httpx.Client(base_url=f"{web.http_url}/api", timeout=30,
                                             headers={"Authorization": f"Bearer {site['sdk']}"}))
    grpc_client = cleanup.enter_context(GrpcFlagClient(grpc_node.target, site["sdk"]))
    ws_events = follow_ws(cleanup, web.ws_url, site["sdk"])
    grpc_events = follow_grpc(cleanup, grpc_client)
    response = admin.post("/flags", json={"key": FLAG, "name": "Hung", "states": {"production": {"enabled": True}}})
    assert response.status_code == 201, response.text
    grpc_events.expect(FLAG, "created", timeout=10)
    wait_until(lambda: private_redis.client().zcard("faults:group:flagsite.versions") == 2,
               what="both watchers in the notice group")
    evaluator = Evaluator(web.http_url, site["sdk"])
    evaluator.start()
    cleanup.callback(evaluator.join, 35)
    cleanup.callback(evaluator.stop.set)

    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        toggled, toggle_seconds = timed(lambda: admin.patch(
            f"/flags/{FLAG}/toggle", params={"environment": "production"}, json={"enabled": False}))
        killed, kill_seconds = timed(lambda: admin.post(
            f"/flags/{FLAG}/kill-switch", json={"reason": "hung redis", "environments": ["production"]}))
        print(f"while Redis hangs: toggle {toggle_seconds:.2f} s, kill {kill_seconds:.2f} s")
        assert (toggled.status_code, toggled.json()["enabled"]) == (200, False), toggled.text
        assert killed.status_code == 200, killed.text
        assert toggle_seconds < WRITE_BOUND and kill_seconds < WRITE_BOUND, (toggle_seconds, kill_seconds)
        # committed once each, and the writing node answers with its own change at once
        assert flag_row(private_postgres, FLAG)[:2] == (False, True)
        assert audit_actions(private_postgres, FLAG) == ["flag.created", "flag.toggled", "flag.killed"]
        evaluated, _ = timed(lambda: sdk.post("/evaluate", json={"flagId": FLAG, "userId": "u1"}))
        assert evaluated.json()["reason"] == "KILLED", evaluated.text
        # this node's WebSocket clients hear it (its watcher polls versions in PostgreSQL; a poll
        # that waited on the cache may fold the toggle into the kill's event: both carry the state)
        flag = ws_events.expect(FLAG, "killed", timeout=10)["flag"]
        assert (flag["enabled"], flag["killed"]) == (False, True)
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)

    # the notices waited for Redis, not for the writes: the other node hears the change now
    assert grpc_events.expect(FLAG, "killed", timeout=20)["flag"]["killed"] is True
    assert grpc_client.evaluate(FLAG, "u1")["reason"] == "KILLED"
    evaluator.stop.set()
    evaluator.join(35)
    assert evaluator.statuses and set(evaluator.statuses) == {200}, set(evaluator.statuses)
    assert audit_actions(private_postgres, FLAG) == ["flag.created", "flag.toggled", "flag.killed"]
    verify_audit(private_postgres)
