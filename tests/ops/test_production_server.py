"""The production HTTP command from the README / docker-compose.yml (granian WSGI workers) serves
the API: health, an evaluation with an SDK key over one kept-alive connection, a management read;
a worker killed under load is replaced and evaluations answer again within seconds."""

import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

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
