"""Property: whatever JSON a client sends to a write endpoint, the answer is never a 500, and a
400 writes nothing (no row, no audit entry, no version bump)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import create_flag, create_segment, db_state

pytestmark = pytest.mark.django_db

scalars = st.none() | st.booleans() | st.integers(-10, 200) | st.text(max_size=8) | st.sampled_from(
    ["production", "staging", "US", "in", "equals", "geo", "custom", "segment", "flag", "vip", "target"])
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["type", "operator", "value", "field", "rules", "rule", "key", "weight"]) | st.text(max_size=5),
    inner, max_size=4), max_leaves=12)
FIELDS = ["key", "name", "description", "tags", "kind", "variants", "enabled", "rules", "environment",
          "states", "version", "reason", "environments", "conditions", "flagId", "userId", "context", "flagIds"]
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6) | json_values

ENDPOINTS = [
    ("post", "/api/flags"), ("put", "/api/flags/target"), ("patch", "/api/flags/target"),
    ("patch", "/api/flags/target/toggle"), ("post", "/api/flags/target/kill-switch"),
    ("post", "/api/flags/target/restore"), ("post", "/api/segments"), ("put", "/api/segments/vip"),
    ("patch", "/api/segments/vip"), ("post", "/api/evaluate"), ("post", "/api/evaluate/bulk"),
]


@pytest.mark.parametrize("method, path", ENDPOINTS)
def test_any_body__never_500_and_400_writes_nothing(editor_api, method, path):
    create_segment("vip", {"plan": "vip"})
    create_flag("target")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def check(body):
        before = db_state()
        response = getattr(editor_api, method)(path, body)
        assert response.status_code in (200, 201, 400, 404, 409), (body, response.status_code, response.content[:300])
        if response.status_code >= 400:
            assert response.json()["error"]["code"]
            assert db_state() == before, body

    check()


events = st.lists(
    st.dictionaries(st.sampled_from(["event", "userId", "value", "timestamp", "properties", "id"]),
                    json_values | st.floats(allow_nan=True) | st.sampled_from(["2026-01-01T00:00:00Z", "buy", 1e300]),
                    max_size=6) | json_values,
    max_size=5)


def test_events__any_batch__never_500_and_400_queues_nothing(sdk_api):
    """POST /api/events: whatever the batch holds, 202 (all queued) or 400 (none queued)."""
    from experiments import buffers

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=st.fixed_dictionaries({"events": events}) | bodies)
    def check(body):
        before = buffers.events.pending()
        response = sdk_api.post("/api/events", body)
        assert response.status_code in (202, 400), (body, response.status_code, response.content[:300])
        if response.status_code == 400:
            assert response.json()["error"]["code"]
            assert buffers.events.pending() == before, body
        else:
            assert buffers.events.pending() == before + response.json()["accepted"]

    check()
