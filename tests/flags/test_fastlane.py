"""The evaluation fast lane (flags/fastlane.py) answers exactly what Django and DRF answer: the same
status, body and headers (but the request id), for every request it takes; the requests it must
not take (errors, CORS, cold keys, ...) reach Django untouched. The rest of the suite runs through
the lane too (it is first in MIDDLEWARE); tests/live runs it through granian's ASGI door."""

import asyncio
import gzip
import json
import types

import pytest
from django.conf import settings as django_settings
from django.test import override_settings
from rest_framework.test import APIClient

from flags import fastlane
from tests.api.conftest import create_flag, make_key, user_with

pytestmark = pytest.mark.django_db
DJANGO_ONLY = [name for name in django_settings.MIDDLEWARE if name != "flags.fastlane.FastLaneMiddleware"]
BODY = {"userId": "user-7", "context": {"country": "US", "plan": "premium"}}


@pytest.fixture
def lane_answers(monkeypatch):
    """The lane's verdicts: True when it answered, False when it left the request to Django."""
    verdicts = []
    real = fastlane.answer

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        verdicts.append(result is not None)
        return result

    monkeypatch.setattr(fastlane, "answer", spy)
    return verdicts


@pytest.fixture
def flags(db):
    rules = [{"type": "geo", "operator": "in", "value": ["US", "CA"]}]
    create_flag("checkout", states={"production": {"enabled": True, "rules": rules}})
    create_flag("banner", states={"production": {"enabled": True}})
    for i in range(12):  # a bulk answer over FLAGS_GZIP_MIN_BYTES
        create_flag(f"filler-{i:02d}", states={"production": {"enabled": i % 2 == 0}})


def post(path, body, key, secure=False, **headers):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return APIClient().post(path, raw, content_type=headers.pop("content_type", "application/json"), secure=secure,
                            HTTP_AUTHORIZATION=f"Bearer {key}", **headers)


def get(path, key, **headers):
    return APIClient().get(path, HTTP_AUTHORIZATION=f"Bearer {key}", **headers)


def both(path, body, key, **headers):
    """(the lane's response, Django's response) to the same request (a GET when body is None); the
    key is warm for both."""
    send = (lambda: get(path, key, **headers)) if body is None else (lambda: post(path, body, key, **headers))
    get("/api/sdk/snapshot", key)  # warm the key cache (any key may ask; Django answers a cold one)
    lane = send()
    with override_settings(MIDDLEWARE=DJANGO_ONLY):
        django = send()
    return lane, django


def same(lane, django):
    assert lane.status_code == django.status_code
    strip = {"X-Request-ID"}
    if lane.headers.get("Content-Encoding") == "gzip":  # Django pads gzip with random bytes (BREACH)
        assert gzip.decompress(lane.content) == gzip.decompress(django.content)
        strip.add("Content-Length")
    else:
        assert lane.content == django.content
    assert {k: v for k, v in lane.headers.items() if k not in strip} == \
        {k: v for k, v in django.headers.items() if k not in strip}
    assert lane.headers["X-Request-ID"]


@pytest.mark.parametrize("path, body", [
    ("/api/evaluate", {"flagId": "checkout", **BODY}),
    ("/api/evaluate", {"flagId": "checkout", "userId": "user-8", "context": {"country": "FR"}}),
    ("/api/evaluate", {"flagId": "no-such-flag"}),
    ("/api/evaluate/bulk", {"flagIds": ["checkout", "banner", "checkout", "nope"], **BODY}),
    ("/api/evaluate/bulk", {"flagIds": ["banner"], "environment": "production"}),
    ("/api/evaluate/bulk", BODY),  # every flag: over 1 KB, gzipped below when the client accepts it
    ("/ofrep/v1/evaluate/flags/checkout", {"context": {"targetingKey": "user-7", "country": "US"}}),
    ("/ofrep/v1/evaluate/flags/banner", {}),
    ("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "user-7", "country": "CA"}}),
    ("/api/sdk/snapshot", None),
])
@pytest.mark.parametrize("headers", [{}, {"HTTP_ACCEPT_ENCODING": "gzip, deflate"}, {"HTTP_X_REQUEST_ID": "req-42"}])
def test_answers_equal_djangos__sdk_key(flags, lane_answers, path, body, headers):
    key = make_key("sdk", environment="production")
    lane, django = both(path, body, key, **headers)
    same(lane, django)
    assert lane_answers[-1] is True
    if headers.get("HTTP_X_REQUEST_ID"):
        assert lane.headers["X-Request-ID"] == "req-42"
    if path in ("/api/evaluate/bulk", "/api/sdk/snapshot") and "flagIds" not in (body or {}) \
            and headers.get("HTTP_ACCEPT_ENCODING"):
        assert lane.headers["Content-Encoding"] == "gzip"


@pytest.mark.parametrize("path, body", [
    ("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "user-7"}}),
    ("/api/sdk/snapshot", None),
])
def test_if_none_match__the_same_304(flags, lane_answers, path, body):
    key = make_key("sdk", environment="production")
    first, _ = both(path, body, key)
    lane, django = both(path, body, key, HTTP_IF_NONE_MATCH=first.headers["ETag"])
    assert lane.status_code == 304
    assert lane_answers[-1] is True
    same(lane, django)


def test_answers_equal_djangos__management_token_and_hsts(flags, lane_answers, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    key = make_key("management", user=user_with("reader", ["flags.view_flag"]))
    lane, django = both("/api/evaluate", {"flagId": "checkout", "environment": "production", **BODY}, key, secure=True)
    same(lane, django)
    assert lane.headers["Strict-Transport-Security"].startswith("max-age=3600")
    assert lane_answers[-1] is True
    assert json.loads(lane.content)["environment"] == "production"


def test_over_the_rate_limit__the_same_429(flags, lane_answers, settings, monkeypatch):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "3/h"
    # One clock for both paths: the 429 says how many seconds remain, which must not tick between them.
    monkeypatch.setattr("flagsite.api.throttling.time", types.SimpleNamespace(time=lambda: 1_800_000_000.25))
    key = make_key("sdk", environment="production")
    from django.core.cache import cache

    post("/api/evaluate", {"flagId": "checkout"}, key)  # warm: 1 of 3
    post("/api/evaluate", {"flagId": "checkout"}, key)
    post("/api/evaluate", {"flagId": "checkout"}, key)
    lane = post("/api/evaluate", {"flagId": "checkout"}, key)
    assert lane_answers[-1] is True
    cache.clear()
    with override_settings(MIDDLEWARE=DJANGO_ONLY):
        for _ in range(3):
            post("/api/evaluate", {"flagId": "checkout"}, key)
        django = post("/api/evaluate", {"flagId": "checkout"}, key)
    assert lane.status_code == 429
    same(lane, django)


@pytest.mark.parametrize("change", [
    {"body": b"{not json"},
    {"body": {"flagId": ""}},
    {"body": {"flagId": "checkout", "environment": "staging"}},  # not this SDK key's environment
    {"body": {"flagId": "checkout"}, "HTTP_ORIGIN": "https://app.example.com"},  # CORS: Django's middleware
    {"body": {"flagId": "checkout"}, "content_type": "text/plain"},
    {"body": {"flagId": "checkout"}, "HTTP_HOST": "evil.example.com"},
    {"body": {"flagId": "checkout"}, "QUERY_STRING": "environment=production"},
    {"path": "/ofrep/v1/evaluate/flags/nope", "body": {}},  # OFREP's 404 FLAG_NOT_FOUND
    {"path": "/ofrep/v1/evaluate/flags/checkout", "body": {"context": "US"}},  # OFREP's 400 INVALID_CONTEXT
])
def test_what_the_lane_leaves_to_django(flags, lane_answers, change):
    key = make_key("sdk", environment="production")
    get("/api/sdk/snapshot", key)
    assert lane_answers == [False]  # a cold key: Django looks it up (and fills the cache)
    headers = dict(change)
    body, path = headers.pop("body"), headers.pop("path", "/api/evaluate")
    lane, django = both(path, body, key, **headers)
    assert lane_answers[-1] is False
    same(lane, django)


def test_an_unknown_key__django_answers_401(flags, lane_answers):
    response = post("/api/evaluate", {"flagId": "checkout"}, "sdk_not-a-key")
    assert response.status_code == 401
    assert lane_answers == [False]


def test_fast_lane_off__every_request_through_django(flags, lane_answers, settings):
    settings.FLAGS_FAST_LANE = False
    key = make_key("sdk", environment="production")
    for _ in range(3):
        response = post("/api/evaluate", {"flagId": "checkout", **BODY}, key)
        assert (response.status_code, json.loads(response.content)["enabled"]) == (200, True)
    assert lane_answers == []


# ---- the ASGI door reads a body as granian sends it ----------------------------------------------

class Receive:
    """An ASGI server's receive(): the given messages, then it waits (a client that stays)."""

    def __init__(self, *messages):
        self.messages, self.calls = list(messages), 0

    async def __call__(self):
        self.calls += 1
        if self.messages:
            return self.messages.pop(0)
        await asyncio.Event().wait()


def read(meta, receive):
    return asyncio.run(asyncio.wait_for(fastlane._read_body(meta, receive), timeout=5))


def replayed(replay, count):
    async def take():
        return [await replay() for _ in range(count)]
    return asyncio.run(asyncio.wait_for(take(), timeout=5))


def test_asgi_body__granians_empty_last_message_is_not_waited_for_and_django_never_sees_it():
    """granian sends the body with more_body=True, then an empty last message: the lane answers
    once the declared length is in, and Django (if the lane declines) gets the body, then what
    follows the empty message (here the client leaving)."""
    receive = Receive({"type": "http.request", "body": b'{"a": 1}', "more_body": True},
                      {"type": "http.request", "body": b"", "more_body": False},
                      {"type": "http.disconnect"})
    body, replay = read({"CONTENT_LENGTH": "8"}, receive)
    assert (body, receive.calls) == (b'{"a": 1}', 1)
    assert replayed(replay, 2) == [{"type": "http.request", "body": b'{"a": 1}', "more_body": False},
                                   {"type": "http.disconnect"}]


@pytest.mark.parametrize("messages, expected", [
    # in pieces, the last one final (uvicorn, daphne): every piece is read
    ([(b'{"a"', True), (b": 1}", False)], b'{"a": 1}'),
    # in pieces, then granian's empty last message
    ([(b'{"a"', True), (b": 1}", True), (b"", False)], b'{"a": 1}'),
])
def test_asgi_body__in_pieces__read_to_the_declared_length(messages, expected):
    receive = Receive(*({"type": "http.request", "body": chunk, "more_body": more} for chunk, more in messages))
    body, replay = read({"CONTENT_LENGTH": "8"}, receive)
    assert (body, receive.calls) == (expected, 2)
    assert replayed(replay, 1) == [{"type": "http.request", "body": expected, "more_body": False}]


def test_asgi_body__none_declared__nothing_read_and_django_reads_its_own():
    receive = Receive({"type": "http.request", "body": b"", "more_body": False})
    body, replay = read({}, receive)
    assert (body, receive.calls) == (b"", 0)
    assert replay is receive


@pytest.mark.parametrize("meta", [{"CONTENT_LENGTH": str(django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)},
                                  {"CONTENT_LENGTH": "8", "HTTP_TRANSFER_ENCODING": "chunked"},
                                  {"CONTENT_LENGTH": "eight"}])
def test_asgi_body__too_large_chunked_or_unreadable__left_to_django_untouched(meta):
    receive = Receive({"type": "http.request", "body": b'{"a": 1}', "more_body": False})
    body, replay = read(meta, receive)
    assert (body, replay, receive.calls) == (None, receive, 0)


def test_asgi_body__the_client_left__django_sees_the_disconnect():
    receive = Receive({"type": "http.request", "body": b'{"a"', "more_body": True}, {"type": "http.disconnect"})
    body, replay = read({"CONTENT_LENGTH": "8"}, receive)
    assert body is None
    assert replayed(replay, 1) == [{"type": "http.disconnect"}]
