"""A busy API key is renewed in the background before its cache entry expires, so callers that must
not wait on the database (the fast lane on the event loop) never lose it under load.

Before, every key expired every FLAGS_API_KEY_CACHE_SECONDS and, until one lookup refilled it,
each of its requests fell through to Django, in a new thread with a new database connection:
bench/rest.py's p99 at c=50 on PostgreSQL was 31-88 ms against 8-18 ms with no expiry.

These tests commit their data (serialized_rollback restores the seeded environments): the renewal
looks the key up on its own thread and its own database connection."""

import json
import time
import types

import pytest
from django.db import connection
from django.utils import timezone

from flags import fastlane, snapshot
from flags.models import ApiKey
from flagsite.api import authentication
from flagsite.api.authentication import cached_api_key, hash_key, resolve_api_key
from tests.api.conftest import create_flag, make_key

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def _no_renewal_left_running():
    """A renewal still running at teardown deadlocked with the flush of the test database (its
    lookup's lock against TRUNCATE's, a CI run on PostgreSQL)."""
    yield
    renewed()


@pytest.fixture
def clock(monkeypatch):
    """authentication's monotonic clock, moved by hand (the renewal thread reads it too)."""
    now = [time.monotonic()]
    monkeypatch.setattr(authentication, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


@pytest.fixture
def lookups(monkeypatch):
    """Key hashes looked up in the database, in order, on any thread."""
    seen = []
    real = authentication._load
    monkeypatch.setattr(authentication, "_load", lambda key_hash: seen.append(key_hash) or real(key_hash))
    return seen


def no_sql_here():
    """Fail any query made on the calling thread (the renewal thread has its own connection)."""
    def refuse(execute, sql, params, many, context):
        raise AssertionError(f"the caller waited on the database: {sql}")

    return connection.execute_wrapper(refuse)


def renewed():
    deadline = time.monotonic() + 10
    while authentication._renewing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not authentication._renewing, "the renewal did not finish within 10 s"


def test_past_half_its_ttl__the_key_answers_and_one_background_lookup_renews_it(settings, clock, lookups):
    settings.FLAGS_API_KEY_CACHE_SECONDS = 5
    key = make_key("sdk", environment="production")
    user, principal = resolve_api_key(key)
    assert len(lookups) == 1

    clock[0] += 3  # past half the TTL, within it
    with no_sql_here():
        answers = [cached_api_key(key, touch=False) for _ in range(50)]
    renewed()

    assert {answer[1] for answer in answers} == {principal}
    assert len(lookups) == 2  # fifty calls, one renewal
    # 5.2 s after the first lookup: expired but for the renewal at 3 s, whose entry is not due
    # before 5.5 s (later, this call queued another renewal, racing the count and the teardown)
    clock[0] += 2.2
    assert cached_api_key(key, touch=False)[1] == principal
    assert len(lookups) == 2


def test_revoked_elsewhere__the_renewal_drops_the_key_within_its_ttl(settings, clock):
    settings.FLAGS_API_KEY_CACHE_SECONDS = 5
    key = make_key("sdk", environment="production")
    assert resolve_api_key(key) is not None
    # another process revoked it: this process's cache was not told
    ApiKey.objects.filter(key_hash=hash_key(key)).update(revoked_at=timezone.now())

    clock[0] += 3
    assert cached_api_key(key, touch=False) is not None  # still within the TTL, as before
    renewed()

    assert cached_api_key(key, touch=False) is None  # the lane leaves it to Django ...
    assert resolve_api_key(key) is None  # ... which answers 401


def test_last_used_stamp_due__written_by_the_renewal_while_the_lane_answers(settings, clock):
    settings.FLAGS_API_KEY_CACHE_SECONDS = 600
    settings.FLAGS_RATE_LIMIT_EVALUATE = "off"
    create_flag("checkout", states={"production": {"enabled": True}})
    key = make_key("sdk", environment="production")
    assert resolve_api_key(key) is not None  # writes the stamp
    ApiKey.objects.filter(key_hash=hash_key(key)).update(last_used_at=None)
    snapshot.get_snapshot("production")

    clock[0] += authentication.LAST_USED_WRITE_INTERVAL + 1  # the stamp is due; the entry is fresh
    request = fastlane.LaneRequest("POST", "/api/evaluate", {
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "HTTP_HOST": "testserver",
        "CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": f"Bearer {key}"}, "http")
    with no_sql_here():
        answer = fastlane.answer(request, json.dumps({"flagId": "checkout", "userId": "u"}).encode(), blocking=False)
    renewed()

    assert answer is not None and answer.status == 200  # before: None, and Django answered it
    assert json.loads(answer.body)["enabled"] is True
    assert ApiKey.objects.get(key_hash=hash_key(key)).last_used_at is not None


def test_a_renewal_racing_a_revoke_in_this_process_does_not_bring_the_key_back(settings, clock, monkeypatch):
    settings.FLAGS_API_KEY_CACHE_SECONDS = 5
    key = make_key("sdk", environment="production")
    assert resolve_api_key(key) is not None
    real = authentication._load

    def load_then_revoke(key_hash):
        loaded = real(key_hash)  # read before the revoke committed
        authentication.forget_api_key(key_hash)  # what the revoke path does on commit
        return loaded

    monkeypatch.setattr(authentication, "_load", load_then_revoke)
    clock[0] += 3
    cached_api_key(key, touch=False)
    renewed()

    assert hash_key(key) not in authentication._cache


def test_idle__the_renewal_thread_holds_no_database_connection(settings, clock, monkeypatch):
    """A connection kept by the renewal thread would count against PostgreSQL's max_connections in
    every worker for good (and keep a test database from being dropped)."""
    settings.FLAGS_API_KEY_CACHE_SECONDS = 5
    key = make_key("sdk", environment="production")
    assert resolve_api_key(key) is not None
    connected_after = []  # on the renewal thread, once a renewal is done
    real = authentication._renew
    monkeypatch.setattr(authentication, "_renew", lambda key_hash: (
        real(key_hash), connected_after.append(connection.connection is not None)))

    clock[0] += 3
    cached_api_key(key, touch=False)
    renewed()

    assert connected_after == [False]
