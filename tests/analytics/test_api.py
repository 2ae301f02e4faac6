"""GET /api/analytics/flags/{key}, GET /api/analytics/metrics, POST /api/sdk/metrics, and the
beat tasks (compaction, stale marking) as the API shows them."""

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import counters, services, tasks
from analytics.models import EvaluationRollup, FlagActivity, UniqueUsersRollup
from audit.actor import Actor
from flags import services as flag_services
from flags.models import Flag
from tests.analytics.conftest import client_with, sdk_key

pytestmark = pytest.mark.django_db


def evaluate(client, key, users, **context):
    for user in users:
        response = client.post("/api/evaluate", {"flagId": key, "userId": user, "context": context}, format="json")
        assert response.status_code == 200


def test_flag_series__24h__hourly_points_with_counts_variants_and_users(make_env_flag, sdk_client, viewer_client):
    make_env_flag("ab-test", kind="multivariate", variants=[{"key": "a", "weight": 50}, {"key": "b", "weight": 50}])
    make_env_flag("checkout", rules=[{"type": "percentage", "operator": "less_than", "value": 50}])
    evaluate(sdk_client, "ab-test", [f"u{i}" for i in range(200)])
    evaluate(sdk_client, "checkout", [f"u{i}" for i in range(100)] * 2)
    counters.flush()

    response = viewer_client.get("/api/analytics/flags/checkout?timeRange=24h")

    assert response.status_code == 200
    body = response.json()
    assert body["flagId"] == "checkout" and body["granularity"] == "hour"
    assert len(body["series"]) == 24
    now = body["series"][-1]
    assert now["evaluations"] == 200 and now["uniqueUsers"] == 100
    assert now["enabled"] + now["disabled"] == 200 and 0 < now["enabled"] < 200
    assert body["totals"]["evaluations"] == 200 and body["totals"]["environments"] == {"production": 200}
    assert body["totals"]["enabledRatio"] == round(now["enabled"] / 200, 4)
    assert sum(p["evaluations"] for p in body["series"][:-1]) == 0

    ab = viewer_client.get("/api/analytics/flags/ab-test?timeRange=7d").json()
    assert ab["granularity"] == "day" and len(ab["series"]) == 7
    assert set(ab["totals"]["variants"]) == {"a", "b"} and sum(ab["totals"]["variants"].values()) == 200
    assert ab["totals"]["uniqueUsers"] == 200
    assert len(viewer_client.get("/api/analytics/flags/ab-test?timeRange=30d").json()["series"]) == 30
    assert len(viewer_client.get("/api/analytics/flags/ab-test?timeRange=1h").json()["series"]) == 2


def test_flag_series__filtered_by_environment(make_env_flag, sdk_client, viewer_client):
    make_env_flag("checkout")
    evaluate(sdk_client, "checkout", ["u1", "u2"])
    evaluate(client_with(sdk_key("staging")), "checkout", ["u1"])
    counters.flush()
    assert viewer_client.get("/api/analytics/flags/checkout").json()["totals"]["evaluations"] == 3
    staging = viewer_client.get("/api/analytics/flags/checkout?environment=staging").json()
    assert staging["totals"]["evaluations"] == 1 and staging["environment"] == "staging"


@pytest.mark.parametrize("value", ["2h", "", "24H", "7"])
def test_flag_series__bad_time_range__400_naming_allowed_values(make_env_flag, viewer_client, value):
    make_env_flag("checkout")
    response = viewer_client.get(f"/api/analytics/flags/checkout?timeRange={value}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "1h, 24h, 7d, 30d" in error["fields"]["timeRange"][0]


def test_flag_series__unknown_flag_404_unknown_environment_400(make_env_flag, viewer_client):
    assert viewer_client.get("/api/analytics/flags/nope").json()["error"]["code"] == "not_found"
    make_env_flag("checkout")
    response = viewer_client.get("/api/analytics/flags/checkout?environment=moon")
    assert response.status_code == 400 and "environment" in response.json()["error"]["fields"]


def test_analytics__auth(make_env_flag, sdk_client, db, django_user_model):
    from rest_framework.test import APIClient

    make_env_flag("checkout")
    assert APIClient().get("/api/analytics/metrics").status_code == 401
    assert sdk_client.get("/api/analytics/metrics").status_code == 403  # SDK keys only evaluate
    nobody = django_user_model.objects.create_user("nobody")
    raw = flag_services.api_key_create(actor=Actor.system(), name="n", kind="management", user=nobody)[1]
    response = client_with(raw).get("/api/analytics/flags/checkout")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"


def test_metrics__counts_flags_states_segments_evaluations(make_env_flag, sdk_client, viewer_client):
    from segments import services as segment_services

    make_env_flag("a")
    make_env_flag("b", enabled=False)
    killed = make_env_flag("c")
    flag_services.flag_kill(actor=Actor.system(), flag=killed, reason="incident", environments=["production"])
    segment_services.segment_create(actor=Actor.system(), key="premium", name="Premium", conditions={"plan": "premium"})
    evaluate(sdk_client, "a", ["u1", "u2", "u3"])
    counters.flush()

    body = viewer_client.get("/api/analytics/metrics").json()

    assert body["flags"] == {"total": 3, "archived": 0, "stale": 0}
    assert body["enabledFlags"] == {"development": 2, "staging": 2, "production": 1}
    assert body["killedFlags"] == {"development": 0, "staging": 0, "production": 1}
    assert body["segments"] == 1 and body["evaluations24h"] == 3 and body["liveConnections"] == 0


def test_sdk_metrics__local_mode_report_counted(make_env_flag, sdk_client, viewer_client):
    make_env_flag("checkout")
    report = {"evaluations": [
        {"flagId": "checkout", "variant": None, "enabled": True, "count": 1200},
        {"flagId": "checkout", "variant": None, "enabled": False, "count": 34},
        {"flagId": "ghost", "variant": None, "enabled": False, "count": 5},
    ]}
    response = sdk_client.post("/api/sdk/metrics", report, format="json")
    assert response.status_code == 202
    assert response.json() == {"accepted": 1234, "ignored": ["ghost"]}
    counters.flush()
    rows = dict(EvaluationRollup.objects.filter(flag_key="checkout").values_list("enabled", "evaluations"))
    assert rows == {True: 1200, False: 34}
    assert not EvaluationRollup.objects.filter(flag_key="ghost").exists()


@pytest.mark.parametrize("body, path", [
    ({"evaluations": "x"}, "evaluations"),
    ({"evaluations": [{"flagId": "checkout", "enabled": True, "count": 0}]}, "evaluations[0].count"),
    ({"evaluations": [{"flagId": "checkout", "enabled": "yes", "count": 1}]}, "evaluations[0].enabled"),
    ({"evaluations": [{"enabled": True, "count": 1}]}, "evaluations[0].flagId"),
    ([1, 2], ""),
])
def test_sdk_metrics__bad_report__400_with_path(make_env_flag, sdk_client, body, path):
    make_env_flag("checkout")
    response = sdk_client.post("/api/sdk/metrics", body, format="json")
    assert response.status_code == 400
    assert path in response.json()["error"]["fields"]
    counters.flush()
    assert not EvaluationRollup.objects.exists()


def test_sdk_local_client_report__reaches_the_rollups(make_env_flag, sdk_client):
    """The SDK's own reporting code against this endpoint (through the DRF test client)."""
    from feature_flag_client.local import LocalEvaluator

    make_env_flag("checkout")
    evaluator = LocalEvaluator()
    evaluator.load(sdk_client.get("/api/sdk/snapshot").json())
    for i in range(50):
        evaluator.is_enabled("checkout", f"u{i}")
    batch = [{"flagId": f, "variant": v, "enabled": e, "count": c} for (f, v, e), c in evaluator.take_counts().items()]
    assert sdk_client.post("/api/sdk/metrics", {"evaluations": batch}, format="json").status_code == 202
    counters.flush()
    assert EvaluationRollup.objects.get(flag_key="checkout").evaluations == 50


def test_compaction__old_hours_become_days_with_merged_users(make_env_flag):
    now = timezone.now()
    old_hour = int((now - timedelta(days=40)).timestamp()) // 3600
    day_start = (old_hour - (old_hour % 24))
    batch = {"counts": [["production", "checkout", None, True, day_start + 1, 10],
                        ["production", "checkout", None, True, day_start + 5, 7],
                        ["production", "checkout", None, False, day_start + 5, 3]],
             "users": []}
    from analytics.hll import HyperLogLog
    import base64

    for hour, users in ((day_start + 1, range(0, 60)), (day_start + 5, range(40, 100))):
        sketch = base64.b64encode(HyperLogLog.of(f"u{i}" for i in users).to_bytes()).decode()
        batch["users"].append(["production", "checkout", hour, sketch])
    services.rollup_apply(batch=batch)
    recent = {"counts": [["production", "checkout", None, True, int(now.timestamp()) // 3600, 4]], "users": []}
    services.rollup_apply(batch=recent)

    assert tasks.compact_rollups.delay().get() == 3

    day = EvaluationRollup.objects.filter(granularity="day")
    assert dict(day.values_list("enabled", "evaluations")) == {True: 17, False: 3}
    assert EvaluationRollup.objects.filter(granularity="hour").get().evaluations == 4  # recent hour kept
    users = UniqueUsersRollup.objects.get(granularity="day")
    assert users.users == 100 and not UniqueUsersRollup.objects.filter(granularity="hour").exists()


def test_stale__unevaluated_30_days__marked_shown_and_cleared_by_an_evaluation(make_env_flag, sdk_client, viewer_client):
    old = make_env_flag("old-flag")
    make_env_flag("new-flag")
    Flag.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=45))

    assert tasks.mark_stale_flags.delay().get() == ["old-flag"]

    listing = {f["key"]: f["stale"] for f in viewer_client.get("/api/flags").json()["results"]}
    assert listing == {"old-flag": True, "new-flag": False}
    assert viewer_client.get("/api/flags/old-flag").json()["stale"] is True
    assert viewer_client.get("/api/analytics/metrics").json()["flags"]["stale"] == 1
    # When someone evaluates it again, the next flush clears the mark
    evaluate(sdk_client, "old-flag", ["u1"])
    counters.flush()
    assert viewer_client.get("/api/flags/old-flag").json()["stale"] is False
    assert FlagActivity.objects.get(flag_key="old-flag").last_evaluated_at is not None
    assert services.flags_mark_stale() == []


def test_no_database_write_per_evaluation(make_env_flag, sdk_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_env_flag("checkout")
    evaluate(sdk_client, "checkout", ["warm"])  # key and snapshot caches warm
    with CaptureQueriesContext(connection) as queries:
        evaluate(sdk_client, "checkout", [f"u{i}" for i in range(200)])
    # at most the snapshot's periodic version check; nothing touches the analytics tables
    assert not [q["sql"] for q in queries.captured_queries if "analytics_" in q["sql"]]
    assert len(queries.captured_queries) < 20
    assert counters.recorder.pending_evaluations() == 201
    assert not EvaluationRollup.objects.exists()
