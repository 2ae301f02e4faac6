"""POST /api/events: 202 and queued in process, 400 with field paths, 413, 401/403, idempotent by
id, and nothing written until the flush (which writes in bulk, on PostgreSQL and SQLite alike)."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments import buffers
from experiments.models import Event
from tests.api.conftest import Client, make_key, user_with

pytestmark = pytest.mark.django_db


def batch(*events):
    return {"events": list(events)}


def purchase(n, **extra):
    return {"event": "purchase", "userId": f"u{n}", "value": 9.5, "id": f"evt-{n}", **extra}


def test_post_events__202__queued_not_written_until_flush(sdk_api):
    with CaptureQueriesContext(connection) as queries:
        response = sdk_api.post("/api/events", batch(purchase(1), purchase(2, properties={"plan": "pro"})))
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 2}
    assert not [q for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
    assert Event.objects.count() == 0
    assert buffers.flush()[0] == 2
    rows = sorted(Event.objects.values_list("event", "user_id", "value", "client_id", "properties",
                                            "environment__key"))
    assert rows == [("purchase", "u1", 9.5, "evt-1", {}, "production"),
                    ("purchase", "u2", 9.5, "evt-2", {"plan": "pro"}, "production")]


def test_post_events__same_ids_resent__adds_nothing(sdk_api):
    events = batch(purchase(1), purchase(2))
    assert sdk_api.post("/api/events", events).status_code == 202
    buffers.flush()
    assert sdk_api.post("/api/events", events).status_code == 202  # a retry after a lost answer
    assert sdk_api.post("/api/events", batch(purchase(2), purchase(3))).status_code == 202
    buffers.flush()
    assert sorted(Event.objects.values_list("client_id", flat=True)) == ["evt-1", "evt-2", "evt-3"]


def test_post_events__without_id_or_timestamp__server_fills_them(sdk_api):
    sdk_api.post("/api/events", batch({"event": "signup", "userId": 42}, {"event": "signup", "userId": "42"}))
    buffers.flush()
    events = list(Event.objects.all())
    assert [e.user_id for e in events] == ["42", "42"]
    assert len({e.client_id for e in events}) == 2 and all(e.timestamp and e.received_at for e in events)
    assert all(e.value is None for e in events)


def test_post_events__timestamp_iso_and_epoch(sdk_api):
    sdk_api.post("/api/events", batch(purchase(1, timestamp="2026-01-02T03:04:05Z"),
                                      purchase(2, timestamp=1767323045.5)))
    buffers.flush()
    stamps = dict(Event.objects.values_list("client_id", "timestamp"))
    assert stamps["evt-1"].isoformat() == "2026-01-02T03:04:05+00:00"
    assert stamps["evt-2"].timestamp() == 1767323045.5


@pytest.mark.parametrize("body, fields", [
    ([], {""}),
    ({"events": "x"}, {"events"}),
    (batch(purchase(0), {"userId": "u"}), {"events[1].event"}),
    (batch(purchase(0, userId=None)), {"events[0].userId"}),
    (batch(purchase(0, userId=True)), {"events[0].userId"}),
    (batch(purchase(0, value="9")), {"events[0].value"}),
    (batch(purchase(0, value=True)), {"events[0].value"}),
    (batch(purchase(0, timestamp="yesterday")), {"events[0].timestamp"}),
    (batch(purchase(0, timestamp="2999-01-01T00:00:00Z")), {"events[0].timestamp"}),
    (batch(purchase(0, properties=[1])), {"events[0].properties"}),
    (batch(purchase(0, id=7)), {"events[0].id"}),
    (batch(purchase(0, id="x" * 129)), {"events[0].id"}),
    (batch(purchase(0, event="e" * 129)), {"events[0].event"}),
    (batch(purchase(0), purchase(1), purchase(2), purchase(3, event="")), {"events[3].event"}),
    (batch(purchase(0), "nope"), {"events[1]"}),
])
def test_post_events__invalid__400_with_field_paths_nothing_queued(sdk_api, body, fields):
    response = sdk_api.post("/api/events", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["fields"]) == fields
    assert buffers.events.pending() == 0


def test_post_events__too_many__413(sdk_api, settings):
    settings.FLAGS_EVENTS_MAX_BATCH = 3
    response = sdk_api.post("/api/events", batch(*(purchase(n) for n in range(4))))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "FLAGS_EVENTS_MAX_BATCH" in response.json()["error"]["message"]
    assert sdk_api.post("/api/events", batch(*(purchase(n) for n in range(3)))).status_code == 202


def test_post_events__body_too_large__413(sdk_api, settings):
    settings.FLAGS_EVENTS_MAX_BYTES = 500
    body = batch(purchase(1, properties={"pad": "x" * 600}))
    response = sdk_api.post("/api/events", body)
    assert response.status_code == 413
    assert "FLAGS_EVENTS_MAX_BYTES" in response.json()["error"]["message"]
    assert buffers.events.pending() == 0


def test_post_events__buffer_full__503_retry_after(sdk_api, settings):
    settings.FLAGS_EVENTS_BUFFER_MAX = 2
    assert sdk_api.post("/api/events", batch(purchase(1), purchase(2))).status_code == 202
    response = sdk_api.post("/api/events", batch(purchase(3)))
    assert response.status_code == 503 and response["Retry-After"]
    assert buffers.events.dropped == 1


def test_post_events__auth(keys, db):
    assert Client().post("/api/events", batch(purchase(1))).status_code == 401
    assert Client("not-a-key").post("/api/events", batch(purchase(1))).status_code == 401
    nobody = make_key("management", user=user_with("nobody", []))
    assert Client(nobody).post("/api/events", batch(purchase(1))).status_code == 403
    reader = Client(keys["reader"])  # a token with flags.view_flag, like the SDK's reports
    assert reader.post("/api/events?environment=staging", batch(purchase(1))).status_code == 202
    assert Client(keys["sdk"]).post("/api/events?environment=staging", batch(purchase(2))).status_code == 403
    assert reader.post("/api/events?environment=nowhere", batch(purchase(3))).status_code == 400
    buffers.flush()
    assert list(Event.objects.values_list("client_id", "environment__key")) == [("evt-1", "staging")]


def test_post_events__not_json__400(sdk_api):
    response = sdk_api.generic("POST", "/api/events", "{nope", "application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["error"]["code"] == "parse_error"


def test_flush__broker_refuses__kept_for_the_next_flush(sdk_api, monkeypatch):
    from experiments import tasks

    sdk_api.post("/api/events", batch(purchase(1)))

    def refuse(batch):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.write_events, "delay", refuse)
    assert buffers.events.flush() == 0
    assert buffers.events.pending() == 1
    monkeypatch.undo()
    assert buffers.events.flush() == 1
    assert Event.objects.count() == 1
