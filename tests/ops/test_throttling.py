"""Rate limits on management and evaluation endpoints: per key, configurable, 429 + Retry-After."""

import pytest
from django.core.cache import cache

from tests.ops.conftest import Client, create_flag

pytestmark = pytest.mark.django_db
EVAL = {"flagId": "f", "userId": "u", "context": {}}


@pytest.fixture(autouse=True)
def _flag(db):
    create_flag("f", states={"production": {"enabled": True}})


def test_management__limit_then_429_in_the_error_shape(settings, keys):
    settings.FLAGS_RATE_LIMIT_MANAGEMENT = "3/h"
    reader = Client(keys["reader"])
    assert [reader.get("/api/flags").status_code for _ in range(3)] == [200] * 3
    response = reader.get("/api/flags")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert set(response.json()) == {"error"}
    assert 1 <= int(response["Retry-After"]) <= 3600
    # another key has its own budget; evaluations are another scope
    assert Client(keys["editor"]).get("/api/flags").status_code == 200
    assert reader.post("/api/evaluate?environment=production", EVAL).status_code == 200


def test_evaluate__limit_per_sdk_key(settings, keys):
    settings.FLAGS_RATE_LIMIT_EVALUATE = "2/h"
    sdk = Client(keys["sdk"])
    statuses = [sdk.post("/api/evaluate", EVAL).status_code for _ in range(2)]
    statuses.append(sdk.post("/api/evaluate/bulk", {"userId": "u"}).status_code)
    statuses.append(sdk.get("/api/sdk/snapshot").status_code)
    assert statuses == [200, 200, 429, 429]
    assert Client(keys["sdk_other"]).post("/api/evaluate", EVAL).status_code == 200


def test_session_user__keyed_by_user(settings, reader, editor):
    settings.FLAGS_RATE_LIMIT_MANAGEMENT = "1/h"
    first, second = Client(), Client()
    first.force_login(reader)
    second.force_login(editor)
    assert first.get("/api/flags").status_code == 200
    assert first.get("/api/flags").status_code == 429
    assert second.get("/api/flags").status_code == 200


def test_off__disables(settings, keys):
    settings.FLAGS_RATE_LIMIT_EVALUATE = settings.FLAGS_RATE_LIMIT_MANAGEMENT = "off"
    sdk, reader = Client(keys["sdk"]), Client(keys["reader"])
    assert {sdk.post("/api/evaluate", EVAL).status_code for _ in range(30)} == {200}
    assert {reader.get("/api/flags").status_code for _ in range(30)} == {200}


def test_health__never_throttled(settings, anon):
    settings.FLAGS_RATE_LIMIT_MANAGEMENT = settings.FLAGS_RATE_LIMIT_EVALUATE = "1/h"
    assert {anon.get("/api/health").status_code for _ in range(5)} == {200}


def test_cache_down__requests_pass_and_the_cache_is_left_alone_for_a_while(settings, keys, monkeypatch):
    """A hung Redis would cost a socket timeout per request: after one failure the limiter skips
    the cache until CACHE_RETRY_SECONDS pass, then tries again."""
    from flagsite.api import throttling

    settings.FLAGS_RATE_LIMIT_EVALUATE = "1/h"
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("redis down")

    monkeypatch.setattr(cache, "incr", broken)
    monkeypatch.setattr(cache, "add", broken)
    monkeypatch.setattr(throttling, "_cache_down_until", 0.0)
    clock = [1_000_000.0]
    monkeypatch.setattr(throttling.time, "time", lambda: clock[0])
    sdk = Client(keys["sdk"])

    assert [sdk.post("/api/evaluate", EVAL).status_code for _ in range(3)] == [200] * 3
    assert len(calls) == 1
    clock[0] += throttling.CACHE_RETRY_SECONDS + 0.1
    assert sdk.post("/api/evaluate", EVAL).status_code == 200
    assert len(calls) == 2


def test_warm_evaluation__throttled_path_adds_no_sql(settings, keys, django_assert_num_queries):
    settings.FLAGS_MAX_STALENESS_MS = 60_000
    settings.FLAGS_RATE_LIMIT_EVALUATE = "1000/h"
    sdk = Client(keys["sdk"])
    sdk.post("/api/evaluate", EVAL)  # warm: key lookup, snapshot, last_used_at
    with django_assert_num_queries(0):
        responses = [sdk.post("/api/evaluate", EVAL) for _ in range(5)]
    assert {r.status_code for r in responses} == {200}


def test_bad_rate__refused_clearly(settings, keys):
    from flagsite.api.throttling import parse_rate

    assert parse_rate("100/min") == (100, 60) and parse_rate("5/h") == (5, 3600) and parse_rate("off") is None
    with pytest.raises(ValueError, match="N/s"):
        parse_rate("lots/s")
