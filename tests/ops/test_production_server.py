"""The production web command from the README / docker-compose.yml (granian ASGI: HTTP and /ws on
one port) serves the API: health, an evaluation with an SDK key over one kept-alive connection, a
management read; a worker killed under load is replaced and evaluations answer again within
seconds. Behind the shipped proxy (deploy/nginx.conf, Debian's nginx) it serves the same API, the
/ws WebSocket and its live events, and sees the client's address through X-Forwarded-For."""

import json
import os
import signal
import subprocess
import threading
import time

import httpx
import pytest
from django.contrib.auth import get_user_model
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from audit.models import AuditEntry
from bench._common import granian_command
from tests.api.conftest import create_flag, make_key
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def start_granian(workers):
    port = free_port()
    server = ServerProcess(granian_command(port, workers=workers), port)
    server.url = f"http://127.0.0.1:{port}"
    return server


@pytest.fixture
def granian():
    server = start_granian(workers=1)
    yield server.url
    server.stop()


def test_granian_serves_health_evaluations_and_the_management_api(granian):
    create_flag("beta", states={"production": {"enabled": True}})
    sdk_key = make_key("sdk", environment="production")

    with httpx.Client(base_url=granian, timeout=10) as client:
        assert client.get("/api/health").status_code == 200
        answers = [client.post("/api/evaluate", headers={"Authorization": f"Bearer {sdk_key}"},
                               json={"flagId": "beta", "userId": f"user-{i}"}) for i in range(5)]
        unauthenticated = client.get("/api/flags")
        # bodies the lane reads and then leaves to Django, which must get them whole (granian ends
        # a body with an empty message the lane does not wait for), on the same connection
        not_json = client.post("/api/evaluate", headers={"Authorization": f"Bearer {sdk_key}",
                                                         "Content-Type": "application/json"}, content=b'{"flagId": ')
        unknown_key = client.post("/api/evaluate", headers={"Authorization": "Bearer sdk_production__" + "x" * 43}, json={"flagId": "beta"})
        after = client.post("/api/evaluate", headers={"Authorization": f"Bearer {sdk_key}"}, json={"flagId": "beta"})

    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "parse_error")
    assert (unknown_key.status_code, unknown_key.json()["error"]["code"]) == (401, "not_authenticated")
    assert (after.status_code, after.json()["enabled"]) == (200, True)
    assert [a.status_code for a in answers] == [200] * 5
    assert all(a.json()["enabled"] is True and a.json()["flagId"] == "beta" for a in answers)
    assert all(a.headers.get("connection", "").lower() != "close" for a in answers)  # keep-alive
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["code"] == "not_authenticated"


def test_granian__a_killed_worker_is_replaced_and_evaluations_answer_again_within_seconds():
    """SIGKILL of one of two workers under load: granian used to log "Unexpected exit from
    worker-1" and stop every worker; with --respawn-failed-workers it starts a new one. Requests
    on the dead worker's connections fail; within seconds every evaluation answers again."""
    create_flag("beta", states={"production": {"enabled": True}})
    sdk_key = make_key("sdk", environment="production")
    server = start_granian(workers=2)
    outcomes, stop = [], threading.Event()

    def load():  # keep-alive; a connection the dead worker held fails once and is replaced
        with httpx.Client(base_url=server.url, timeout=2, headers={"Authorization": f"Bearer {sdk_key}"}) as client:
            while not stop.is_set():
                try:
                    response = client.post("/api/evaluate", json={"flagId": "beta", "userId": "u1"})
                    outcomes.append((time.monotonic(), response.status_code == 200 and response.json()["enabled"]))
                except httpx.TransportError:
                    outcomes.append((time.monotonic(), False))
                    time.sleep(0.01)

    def workers():
        return set(subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout.split())

    clients = [threading.Thread(target=load) for _ in range(4)]
    try:
        before = workers()
        assert len(before) == 2
        for client in clients:
            client.start()
        time.sleep(1)
        victim = sorted(before)[0]
        os.kill(int(victim), signal.SIGKILL)
        killed = time.monotonic()
        while not (len(workers()) == 2 and victim not in workers()) and time.monotonic() < killed + 10:
            time.sleep(0.1)
        assert server.process.poll() is None and len(workers()) == 2 and victim not in workers()
        with httpx.Client(base_url=server.url, timeout=2) as probe:  # the new worker has loaded Django
            while probe.get("/api/health").status_code != 200 and time.monotonic() < killed + 15:
                time.sleep(0.1)
        recovered = time.monotonic()
        time.sleep(2)
    finally:
        stop.set()
        for client in clients:
            if client.is_alive():
                client.join(10)
        server.stop()
    failed = sum(not ok for _, ok in outcomes)
    after = [ok for at, ok in outcomes if at > recovered]
    print(f"{len(outcomes)} evaluations, {failed} failed; answering again {recovered - killed:.1f}s after the kill")
    assert recovered - killed < 15
    assert len(after) >= 20 and all(after)


CLIENT_IP = "203.0.113.5"  # what a load balancer in front of nginx appended for the client
# ... after whatever the client itself sent: only nginx appending its peer makes CLIENT_IP the
# NUM_PROXIES-th (2nd) entry from the end; a location that forgot to would log the spoofed one
FORWARDED = f"192.0.2.66, {CLIENT_IP}"


def receive(ws, wanted, timeout=10):
    """The next frame of type `wanted` (skipping pings), within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame["type"] == wanted:
            return frame


def logged(path, text, timeout=5):
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.needs("nginx")
@pytest.mark.production_http(NUM_PROXIES=2, FLAGS_WS_PING_SECONDS=30)  # a load balancer, then nginx
def test_behind_the_proxy__api_ws_and_the_client_address(production_http, tmp_path):
    """README "Deployment" end to end on 127.0.0.1: nginx (deploy/nginx.conf) in front of granian
    ASGI. Health, an evaluation, a bulk evaluation and a 401 pass through `location /`; a /ws
    client through `location /ws` gets its hello and then the kill made over REST through the
    proxy. X-Forwarded-For reaches the app on both locations (NUM_PROXIES=2: the client's
    address as a load balancer in front of nginx would have appended it): in the kill's audit
    entry, and in the refused WebSocket's log line, which names the client, not nginx."""
    create_flag("beta", states={"production": {"enabled": True}, "development": {"enabled": True}})
    create_flag("other", states={"production": {"enabled": False}})
    sdk_key = make_key("sdk", environment="production")
    admin = get_user_model().objects.create_superuser("proxy-admin", password="pw-proxy-123")
    token = make_key("management", user=admin)
    forwarded = {"X-Forwarded-For": FORWARDED}

    with httpx.Client(base_url=production_http.http_url, timeout=10) as client:
        health = client.get("/api/health")
        evaluation = client.post("/api/evaluate", headers={"Authorization": f"Bearer {sdk_key}"},
                                 json={"flagId": "beta", "userId": "user-1"})
        bulk = client.post("/api/evaluate/bulk", headers={"Authorization": f"Bearer {sdk_key}"},
                           json={"userId": "user-1", "context": {"country": "DE"}})
        bad_key = client.post("/api/evaluate", headers={"Authorization": "Bearer sdk_production_not-a-key"},
                              json={"flagId": "beta", "userId": "user-1"})

        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert evaluation.status_code == 200
        assert (evaluation.json()["flagId"], evaluation.json()["enabled"]) == ("beta", True)
        assert bulk.status_code == 200
        assert {key: flag["enabled"] for key, flag in bulk.json()["flags"].items()} == {"beta": True, "other": False}
        assert bad_key.status_code == 401 and bad_key.json()["error"]["code"] == "not_authenticated"

        with connect(f"{production_http.ws_url}?key={sdk_key}", additional_headers=forwarded,
                     open_timeout=10, close_timeout=2) as ws:
            hello = receive(ws, "hello")
            assert hello["environment"] == "production"
            killed = client.post("/api/flags/beta/kill-switch?environment=production", json={"reason": "via proxy"},
                                 headers={"Authorization": f"Bearer {token}", **forwarded})
            assert killed.status_code == 200, killed.text
            event = receive(ws, "flag.changed")
        assert (event["action"], event["flag"]["key"], event["environment"]) == ("killed", "beta", "production")
        assert event["version"] > hello["version"]
        after = client.post("/api/evaluate", headers={"Authorization": f"Bearer {sdk_key}"},
                            json={"flagId": "beta", "userId": "user-1"}).json()
        assert (after["enabled"], after["reason"]) == (False, "KILLED")

    entries = AuditEntry.objects.filter(action="flag.killed", target_key="beta")
    assert entries and {(e.ip, e.reason) for e in entries} == {(CLIENT_IP, "via proxy")}

    with connect(f"{production_http.ws_url}?key=sdk_production_bad-guess", additional_headers={
            "X-Forwarded-For": "192.0.2.66, 198.51.100.9"}, open_timeout=10, close_timeout=2) as ws:
        assert receive(ws, "error")["error"]["code"] == "not_authenticated"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4401
    assert logged(tmp_path / "web.log", "transport=websocket fingerprint="), (tmp_path / "web.log").read_text()
    line = next(line for line in (tmp_path / "web.log").read_text().splitlines() if "transport=websocket" in line)
    assert "ip=198.51.100.9" in line, line
