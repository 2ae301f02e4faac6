"""Refused WebSocket handshakes are logged like failed REST authentications (same logger, same
fingerprint of the key), with structured fields, and never with the key.

The handshakes go through the real ASGI application (flagsite.asgi: origin check, session
middleware, URL router, FlagConsumer) with channels' WebsocketCommunicator, in this process so
that caplog sees the records."""

import asyncio
import json
import logging

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from audit.actor import Actor
from flags import services
from flags.models import ApiKey, Environment
from flagsite.api.authentication import forget_api_key, hash_key
from flagsite.asgi import application
from flagsite.ops.logging import JsonFormatter
from tests.api.conftest import Client

# in_process_consumers: a watcher and channel layer of each test's own (the subject here is the
# handshake's logging; tests/live and tests/faults cover the Redis layer with real servers)
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True),
              pytest.mark.usefixtures("in_process_consumers")]

SYSTEM = Actor.system("ws-logging-tests")
LOGGER = "flagsite.api.authentication"
CLIENT = ("198.51.100.23", 50123)
GUESS = "sdk_production_" + "S3CRETguessS3CRETguess" * 2


@pytest.fixture(autouse=True)
def _fresh_keys():
    forget_api_key()
    yield
    forget_api_key()


def handshake(path, headers=()):
    """Connect, read the error frame, wait for the close: (close code, error frame)."""

    async def run():
        communicator = WebsocketCommunicator(application, path, headers=list(headers))
        communicator.scope["client"] = CLIENT
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        frame = json.loads(await communicator.receive_from(timeout=5))
        closed = await communicator.receive_output(timeout=5)
        await communicator.wait()
        return closed.get("code"), frame

    return asyncio.run(run())


def refusals(caplog):
    return [r for r in caplog.records if r.name == LOGGER and "authentication failed" in r.getMessage()]


def assert_never_the_key(caplog, key):
    assert key not in caplog.text
    tail = key[len(key) // 4:]  # beyond the logged prefix (at most a quarter of the key)
    for record in caplog.records:
        assert tail not in record.getMessage()
        assert all(tail not in str(value) for value in vars(record).values())


@pytest.mark.parametrize("how", ["bearer", "x-api-key", "query"])
def test_unknown_key__one_structured_warning_with_fingerprint_and_ip__never_the_key(caplog, how):
    headers = {"bearer": [(b"authorization", f"Bearer {GUESS}".encode())],
               "x-api-key": [(b"x-api-key", GUESS.encode())], "query": []}[how]
    path = f"/ws?key={GUESS}" if how == "query" else "/ws"

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        code, frame = handshake(path, headers)

    assert code == 4401 and frame["error"]["code"] == "not_authenticated"
    [record] = refusals(caplog)
    assert record.levelno == logging.WARNING
    assert record.transport == "websocket" and record.reason == "invalid_key"
    assert record.client_ip == CLIENT[0]
    assert record.key_fingerprint == hash_key(GUESS)[:12]
    assert record.key_prefix == GUESS[:8] and len(record.key_prefix) <= len(GUESS) // 4
    message = record.getMessage()
    assert f"fingerprint={hash_key(GUESS)[:12]}" in message and f"ip={CLIENT[0]}" in message
    assert "transport=websocket" in message and "path=/ws" in message
    assert_never_the_key(caplog, GUESS)


@pytest.mark.parametrize("num_proxies, expected", [(0, CLIENT[0]), (1, "203.0.113.7"), (2, "192.0.2.1")])
def test_client_ip__honours_num_proxies_like_http(caplog, settings, num_proxies, expected):
    """Behind nginx the socket's peer is the proxy: the address logged (and bucketed for failed
    keys) is X-Forwarded-For's NUM_PROXIES-th entry from the end, audit.actor.client_ip's rule for
    HTTP; without NUM_PROXIES the header is the client's own word and ignored."""
    settings.NUM_PROXIES = num_proxies
    headers = [(b"authorization", f"Bearer {GUESS}".encode()), (b"x-forwarded-for", b"192.0.2.1, 203.0.113.7")]

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        code, _ = handshake("/ws", headers)

    assert code == 4401
    [record] = refusals(caplog)
    assert record.client_ip == expected and f"ip={expected}" in record.getMessage()


def test_same_key__same_fingerprint_on_rest_and_websocket(caplog, db):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        Client(GUESS).post("/api/evaluate", {"flagId": "f"}, REMOTE_ADDR=CLIENT[0])
        handshake("/ws", [(b"authorization", f"Bearer {GUESS}".encode())])

    rest, ws = refusals(caplog)
    fingerprint = f"fingerprint={hash_key(GUESS)[:12]}"
    assert fingerprint in rest.getMessage() and fingerprint in ws.getMessage()
    assert f"ip={CLIENT[0]}" in rest.getMessage() and f"ip={CLIENT[0]}" in ws.getMessage()
    assert_never_the_key(caplog, GUESS)


def test_revoked_key__logged_as_invalid(caplog):
    production = Environment.objects.get(key="production")
    api_key, raw = services.api_key_create(actor=SYSTEM, name="old", kind="sdk", environment=production)
    services.api_key_revoke(actor=SYSTEM, api_key=ApiKey.objects.get(pk=api_key.pk))
    forget_api_key()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        code, _ = handshake(f"/ws?key={raw}")

    assert code == 4401
    [record] = refusals(caplog)
    assert record.reason == "invalid_key" and record.key_fingerprint == hash_key(raw)[:12]
    assert_never_the_key(caplog, raw)


def test_missing_key__logged_without_fingerprint(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        code, _ = handshake("/ws")

    assert code == 4401
    [record] = refusals(caplog)
    assert record.reason == "missing_key" and record.key_fingerprint == "" and record.key_prefix == ""
    assert record.client_ip == CLIENT[0]


def test_short_key__prefix_stays_a_quarter_of_it(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        handshake("/ws?key=hunter2pw")

    [record] = refusals(caplog)
    assert record.key_prefix == "hu"  # 9 characters: at most 2 shown
    assert_never_the_key(caplog, "hunter2pw")


def test_management_token_without_permission__logged_as_not_permitted(caplog):
    nobody = get_user_model().objects.create_user("nobody")
    _, raw = services.api_key_create(actor=SYSTEM, name="mgmt", kind="management", user=nobody)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        code, frame = handshake("/ws?environment=production", [(b"authorization", f"Bearer {raw}".encode())])

    assert code == 4403 and frame["error"]["code"] == "permission_denied"
    [record] = refusals(caplog)
    assert record.reason == "not_permitted" and record.key_fingerprint == hash_key(raw)[:12]
    assert_never_the_key(caplog, raw)


def test_valid_key__nothing_logged(caplog):
    production = Environment.objects.get(key="production")
    _, raw = services.api_key_create(actor=SYSTEM, name="ok", kind="sdk", environment=production)

    async def run():
        communicator = WebsocketCommunicator(application, f"/ws?key={raw}")
        connected, _ = await communicator.connect(timeout=5)
        hello = json.loads(await communicator.receive_from(timeout=5))
        await communicator.disconnect()
        return connected, hello

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        connected, hello = asyncio.run(run())

    assert connected and hello["type"] == "hello"
    assert refusals(caplog) == []


def test_json_log_line__carries_the_fields(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        handshake("/ws", [(b"authorization", f"Bearer {GUESS}".encode())])

    [record] = refusals(caplog)
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == LOGGER and line["level"] == "WARNING"
    assert {line["transport"], line["reason"], line["client_ip"]} == {"websocket", "invalid_key", CLIENT[0]}
    assert line["key_fingerprint"] == hash_key(GUESS)[:12]
    assert GUESS not in json.dumps(line)


@pytest.mark.parametrize("frame", ["[" * 2000 + "]" * 2000, '{"type": "ping", "x": ' + "[" * 1500 + "]" * 1500 + "}"])
def test_deeply_nested_client_message__error_frame_and_the_socket_stays_open(frame):
    """json.loads raises RecursionError (not a ValueError) past the recursion limit: it used to
    escape receive() and close the connection with an error."""
    production = Environment.objects.get(key="production")
    _, raw = services.api_key_create(actor=SYSTEM, name="ok", kind="sdk", environment=production)

    async def run():
        communicator = WebsocketCommunicator(application, f"/ws?key={raw}")
        await communicator.connect(timeout=5)
        await communicator.receive_from(timeout=5)  # hello
        await communicator.send_to(text_data=frame)
        error = json.loads(await communicator.receive_from(timeout=5))
        await communicator.send_to(text_data='{"type": "ping"}')
        pong = json.loads(await communicator.receive_from(timeout=5))
        await communicator.disconnect()
        return error, pong

    error, pong = asyncio.run(run())

    assert error == {"type": "error", "error": {"code": "bad_message", "message": "messages must be JSON"}}
    assert pong["type"] == "pong"


def test_database_down_for_an_unseen_key__error_frame_and_close_4503(monkeypatch):
    """PostgreSQL down and a key this process never resolved: "try again later", not a crash.
    (Through a real server: tests/live/test_ws_close_codes.py.)"""
    from django.db import OperationalError

    from flags import consumers

    def down(raw_key, client_ip=None):
        raise OperationalError("connection refused")

    monkeypatch.setattr(consumers, "resolve_api_key", down)

    code, frame = handshake("/ws", [(b"authorization", f"Bearer {GUESS}".encode())])

    assert code == 4503
    assert frame["error"]["code"] == "unavailable"
