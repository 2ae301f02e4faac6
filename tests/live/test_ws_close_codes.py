"""/ws close codes through a REAL web server, granian ASGI (channels' in-process communicator accepts
codes a server may refuse to send: daphne turned 1013 into 1011 and an ERROR traceback on the wire)."""

import json
import time

import pytest
from feature_flag_client import WebSocketClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.servers import free_port, start_web

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
GUESS = "sdk_production_" + "unseen" * 6


@pytest.fixture
def daphne_without_database(tmp_path):
    """The web server, its PostgreSQL refusing connections (nothing listens on its port)."""
    log = open(tmp_path / "daphne.log", "w+")
    server = start_web(output=log, DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere")
    yield server, log
    server.stop()
    log.close()


def close_of(url, headers=None):
    """(error frame, close code) of a handshake the server refuses after accepting."""
    with ws_connect(url, additional_headers=headers, open_timeout=10) as socket:
        frame = json.loads(socket.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    return frame, closed.value.rcvd.code if closed.value.rcvd else None


def test_database_down_and_an_unseen_key__4503_and_no_traceback(daphne_without_database):
    server, log = daphne_without_database
    frame, code = close_of(server.ws_url, {"Authorization": f"Bearer {GUESS}"})

    assert code == 4503
    assert frame["type"] == "error" and frame["error"]["code"] == "unavailable"
    time.sleep(0.3)
    log.seek(0)
    output = log.read()
    assert "invalid close code" not in output.lower() and "Traceback" not in output, output


def test_sdk_client__backs_off_on_4503(daphne_without_database):
    """A server that accepts and closes at once used to reset the SDK's backoff on every attempt
    (a reconnect every ~50 ms for as long as the database was down)."""
    server, _ = daphne_without_database
    attempts = []
    client = WebSocketClient(server.ws_url, api_key=GUESS, min_backoff=0.05, max_backoff=2.0, daemon=True)
    client.on_message(lambda data: attempts.append(data) if data.get("type") == "error" else None)
    client.connect()
    try:
        time.sleep(3)
    finally:
        client.close()
    assert attempts and all(a["error"]["code"] == "unavailable" for a in attempts)
    assert 2 <= len(attempts) <= 12, f"{len(attempts)} attempts in 3 s"
    assert client.last_error is not None


def test_connections_per_key__capped_with_4429__a_closed_one_frees_its_slot(sdk_key):
    server = start_web(FLAGS_WS_MAX_CONNECTIONS_PER_KEY="3")
    try:
        url = f"{server.ws_url}?key={sdk_key}"
        sockets = [ws_connect(url, open_timeout=10) for _ in range(3)]
        for socket in sockets:
            assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        frame, code = close_of(url)
        assert code == 4429 and frame["error"]["code"] == "too_many_connections"

        sockets.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the server frees the slot when it sees the close
            with ws_connect(url, open_timeout=10) as socket:
                if json.loads(socket.recv(timeout=10))["type"] == "hello":
                    break
            assert time.monotonic() < deadline, "the closed connection's slot was never freed"
            time.sleep(0.1)
        for socket in sockets:
            socket.close()
    finally:
        server.stop()


def test_invalid_key_flood__4429_without_lookup():
    from django.core.cache import cache

    server = start_web(FLAGS_AUTH_FAILURE_LIMIT="3/d")
    window = int(time.time() // 86400)
    cache.delete(f"flags:authfail:127.0.0.1:86400:{window}")  # shared with the server on the Redis leg
    try:
        codes = [close_of(f"{server.ws_url}?key=sdk_guess_{n}")[1] for n in range(3)]
        frame, code = close_of(f"{server.ws_url}?key=sdk_guess_more")
        assert codes == [4401] * 3
        assert code == 4429 and frame["error"]["code"] == "throttled"
    finally:
        server.stop()
        cache.delete(f"flags:authfail:127.0.0.1:86400:{window}")
