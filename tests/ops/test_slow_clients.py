"""Slow clients against the production HTTP topology (README "Deployment"): the front proxy
(deploy/nginx.conf, run by Debian's nginx) in front of the granian ASGI command. 50 sockets that
send part of their headers, or announce a body and send a few bytes of it, and then stall, must not
stop a steady client's evaluations, and the proxy must drop them once its timeouts pass.

Straight at granian too (a proxy misconfigured, or a client inside the network): its ASGI workers
read a body on the event loop, so stalled sockets cost coroutines, not workers. Under granian's
WSGI interface (before issue 15) a body was read on the worker's one blocking thread with no
timeout: one stalled body per worker took every evaluation offline (issue 14)."""

import socket
import time

import httpx
import pytest

from tests.api.conftest import create_flag, make_key

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.needs("nginx")]

SLOW = 50
HOLD = 11.0  # seconds the steady client evaluates while the slow sockets stall: past the proxy's 10 s timeouts
CLOSED_WITHIN = 20.0  # every slow socket is dropped by then (the proxy's timeouts plus a busy machine's slack)
DIRECT_HOLD = 6.0  # straight at granian: seconds of evaluations while all 50 stall (nothing drops them sooner)


def stalled_socket(port, request):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(request.encode())
    return sock


def slow_requests(sdk_key):
    """Half stop inside their headers, half announce 10,000 body bytes and send a few; on
    /api/evaluate with a valid SDK key and on /admin/login/."""
    evaluate = f"POST /api/evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {sdk_key}\r\n"
    login = "POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    headers_only = [evaluate + "Content-Type: appl", login + "Content-Ty"]
    with_body = [evaluate + 'Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"flagId": "be',
                 login + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\nusername=ad"]
    return [(headers_only if i % 2 else with_body)[(i // 2) % 2] for i in range(SLOW)]


def closed_by_server(sock, deadline):
    """True once the server closed the socket (after a 408 or nothing) before deadline."""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except OSError:  # reset: closed too
            return True


def test_slow_headers_and_bodies__evaluations_keep_answering_and_the_proxy_drops_the_stalled(production_http):
    create_flag("beta", states={"production": {"enabled": True}})
    sdk_key = make_key("sdk", environment="production")
    port = production_http.proxy.port
    with httpx.Client(base_url=production_http.http_url, timeout=10,
                      headers={"Authorization": f"Bearer {sdk_key}"}) as client:
        assert client.post("/api/evaluate", json={"flagId": "beta", "userId": "warm-up"}).status_code == 200

        opened = time.monotonic()
        stalled = [stalled_socket(port, request) for request in slow_requests(sdk_key)]
        try:
            answers, latencies = [], []
            while time.monotonic() - opened < HOLD:
                started = time.monotonic()
                response = client.post("/api/evaluate", json={"flagId": "beta", "userId": f"user-{len(answers)}"})
                latencies.append(time.monotonic() - started)
                answers.append((response.status_code, response.json().get("enabled")))
                time.sleep(0.02)
            dropped = [closed_by_server(sock, opened + CLOSED_WITHIN) for sock in stalled]
        finally:
            for sock in stalled:
                sock.close()

    print(f"{len(answers)} evaluations while {SLOW} sockets stalled: max latency {max(latencies):.3f}s")
    assert len(answers) >= 50  # the client kept going the whole time (about 20/s when unhindered)
    assert answers == [(200, True)] * len(answers)
    assert max(latencies) < 2.0  # generous: a loaded 2-core machine, not a stalled worker (that is > 10 s)
    assert dropped == [True] * SLOW


@pytest.mark.production_http(workers=1)
def test_slow_headers_and_bodies_straight_at_granian__evaluations_answer_promptly(production_http):
    """50 stalled sockets at the ASGI server's own port, one worker (the hardest case: every
    stalled socket lands on the worker that must answer): evaluations on a fresh connection
    each, straight at granian and through the proxy, keep answering at once."""
    create_flag("beta", states={"production": {"enabled": True}})
    sdk_key = make_key("sdk", environment="production")
    headers = {"Authorization": f"Bearer {sdk_key}"}
    direct = f"http://127.0.0.1:{production_http.web.port}"
    body = {"flagId": "beta", "userId": "warm-up"}
    assert httpx.post(f"{direct}/api/evaluate", json=body, headers=headers, timeout=10).status_code == 200

    opened = time.monotonic()
    stalled = [stalled_socket(production_http.web.port, request) for request in slow_requests(sdk_key)]
    try:
        answers, latencies = [], []
        while time.monotonic() - opened < DIRECT_HOLD:
            for url in (direct, production_http.http_url):
                started = time.monotonic()
                response = httpx.post(f"{url}/api/evaluate", headers=headers, timeout=5,
                                      json={"flagId": "beta", "userId": f"user-{len(answers)}"})
                latencies.append(time.monotonic() - started)
                answers.append((response.status_code, response.json().get("enabled")))
            time.sleep(0.02)
        still_open = sum(not closed_by_server(sock, time.monotonic() + 0.01) for sock in stalled)
    finally:
        for sock in stalled:
            sock.close()

    print(f"{len(answers)} evaluations while {SLOW} sockets stalled at granian: max latency "
          f"{max(latencies):.3f}s; {still_open} of them still open after {DIRECT_HOLD:g}s")
    assert len(answers) >= 40
    assert answers == [(200, True)] * len(answers)
    assert max(latencies) < 2.0
    assert still_open == SLOW  # they really stalled the whole time (granian drops none this early)
