"""SDK track() against a live web server (granian): events queued in the client, sent in batches
to POST /api/events, flushed by the server into the database (eagerly in the embedded run, by a
Celery worker over Redis on the Redis leg); a resent batch stores nothing twice. And the client's
queue on its own (no server): bounded with a dropped counter, kept while the server is down."""

import os
import subprocess
import sys
import time

import httpx
import pytest

from experiments.models import Event
from feature_flag_client import FeatureFlagClient, LocalFeatureFlagClient
from tests.servers import start_web

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def events_server(transactional_db):
    """The web server flushing every 0.2 s, plus a Celery worker when tasks go over Redis."""
    worker = None
    if os.environ.get("REDIS_URL"):
        from flagsite.celery import app
        from tests.servers import child_env

        app.control.purge()  # batches earlier tests flushed with no worker running
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "flagsite", "worker", "--pool=solo", "--loglevel=WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=child_env(FLAGS_ANALYTICS_AUTOFLUSH="false"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = start_web(FLAGS_ANALYTICS_FLUSH_SECONDS="0.2")
    yield server
    server.stop()
    if worker is not None:
        worker.terminate()
        worker.wait(timeout=30)


def stored(ids, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(Event.objects.filter(client_id__in=ids).values_list("client_id", "event", "user_id", "value",
                                                                        "properties"))
        if len(rows) >= len(ids):
            return sorted(rows)
        time.sleep(0.1)
    return sorted(rows)


def test_remote_track__batched__stored_once_even_when_resent(events_server, sdk_key):
    sent = []
    with FeatureFlagClient(f"{events_server.http_url}/api", sdk_key, events_flush_interval=60) as client:
        original = client._send_events
        client.events._send = lambda batch: (sent.append(batch), original(batch))
        assert client.track("purchase", "user-1", value=19.99, properties={"plan": "pro"})
        assert client.track("signup", 42)
        assert client.flush_events() == 2
        client._send_events(sent[0])  # the same batch again, as a retry after a lost answer would
    ids = [event["id"] for event in sent[0]]
    assert stored(ids) == sorted([(ids[0], "purchase", "user-1", 19.99, {"plan": "pro"}),
                                  (ids[1], "signup", "42", None, {})])
    time.sleep(0.5)  # another flush or two: still one row each
    assert Event.objects.filter(client_id__in=ids).count() == 2


def test_local_client_track__sent_on_close(events_server, sdk_key):
    client = LocalFeatureFlagClient(f"{events_server.http_url}/api", sdk_key)
    client.client.events.flush_interval = 60  # only close() sends
    client.track("checkout", "user-7", value=3)
    [queued] = list(client.client.events._queue)
    client.close()
    assert client.client.events.sent == 1
    assert stored([queued["id"]]) == [(queued["id"], "checkout", "user-7", 3.0, {})]


def test_track_queue__bounded_dropped_counted__kept_while_server_down():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "down"}})

    client = FeatureFlagClient("http://flagsite.invalid/api", "sdk_x", transport=httpx.MockTransport(handler),
                               retries=1, backoff=0.001, events_max_queue=3, events_flush_interval=60)
    assert [client.track("e", f"u{n}") for n in range(4)] == [True, True, True, False]
    assert client.events.dropped == 1
    assert client.flush_events() == 0  # 503, retried once, then kept
    assert len(calls) == 2 and client.events.pending() == 3
    ids = {e["id"] for e in client.events._queue}
    assert len(ids) == 3  # an id per event: the retry sends the same ids
    assert client.track("e", "u9") is False  # still full
    client.close()
    assert client.events.dropped == 2 + 3  # what could not be sent at close is counted too


def test_track_invalid_batch__dropped_not_retried():
    def handler(request):
        return httpx.Response(400, json={"error": {"code": "validation_error", "message": "bad",
                                                   "fields": {"events[0].event": ["bad"]}}})

    client = FeatureFlagClient("http://flagsite.invalid/api", "sdk_x", transport=httpx.MockTransport(handler),
                               events_flush_interval=60)
    client.track("e", "u1")
    assert client.flush_events() == 0
    assert client.events.pending() == 0 and client.events.dropped == 1
    client.close()


def test_openfeature_track__sent_through_the_providers_client(events_server, sdk_key):
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.track import TrackingEventDetails

    from feature_flag_client.openfeature import FlagsiteProvider

    local = LocalFeatureFlagClient(f"{events_server.http_url}/api", sdk_key)
    local.client.events.flush_interval = 60
    provider = FlagsiteProvider(local)
    from openfeature import api

    api.set_provider(provider, domain="tracking-test")
    client = api.get_client(domain="tracking-test")
    client.track("purchase", EvaluationContext("user-of", {"plan": "pro"}),
                 TrackingEventDetails(12.5, {"currency": "EUR"}))
    client.track("purchase", EvaluationContext(None, {}))  # no targeting key: not sent
    [queued] = list(local.client.events._queue)
    assert local.flush_events() == 1
    assert stored([queued["id"]]) == [(queued["id"], "purchase", "user-of", 12.5, {"currency": "EUR"})]
    api.clear_providers()
    local.close()
