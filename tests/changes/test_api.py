"""REST: /api/scheduled-changes and /api/rollout-plans (and under /api/projects/<project>/): status
codes, bodies, rows, and bad input answered 400 with field paths and nothing written."""

import pytest

from audit.models import AuditEntry
from changes import services
from changes.models import RolloutPlan, ScheduledChange
from projects import scope
from projects import services as project_services
from tests.api.conftest import SYSTEM, Client, create_flag, make_key
from tests.changes.conftest import SCHEDULER_PERMS, grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user):
    grant(user, *SCHEDULER_PERMS)
    return Client(make_key("management", user=user))


@pytest.fixture
def flag(db):
    return create_flag("checkout")


def body(**overrides):
    return {"flag": "checkout", "environment": "production", "change": {"action": "enable"},
            "runAt": "2026-12-04T10:00:00+01:00", "timezone": "Europe/Berlin", **overrides}


def test_create__201_with_utc_and_local_time__listed__detail(api, flag, clock):
    response = api.post("/api/scheduled-changes", body())
    assert response.status_code == 201, response.content
    data = response.json()
    assert response["Location"] == f"/api/scheduled-changes/{data['id']}"
    assert {k: data[k] for k in ("flag", "environment", "action", "change", "runAt", "timezone", "runAtLocal",
                                 "status", "author", "baseVersion", "plan")} == {
        "flag": "checkout", "environment": "production", "action": "enable", "change": {},
        "runAt": "2026-12-04T09:00:00Z", "timezone": "Europe/Berlin",
        "runAtLocal": "2026-12-04 10:00 CET (Europe/Berlin)", "status": "pending", "author": "alice (apikey:"
        + data["author"].split("apikey:")[1], "baseVersion": 1, "plan": None}
    listed = api.get("/api/scheduled-changes?flag=checkout&status=pending").json()
    assert [row["id"] for row in listed["results"]] == [data["id"]]
    assert api.get(f"/api/scheduled-changes/{data['id']}").json() == data
    assert api.get("/api/scheduled-changes/999999").status_code == 404


def test_update_change_as_the_patch_body__applied_later(api, flag, clock):
    rules = [{"type": "percentage", "operator": "less_than", "value": 20}]
    response = api.post("/api/scheduled-changes", body(change={"action": "update", "enabled": True, "rules": rules},
                                                      runAt="2026-12-04T09:30:00Z"))
    assert response.status_code == 201, response.content
    clock.advance(hours=2)
    assert services.apply_due() == [(response.json()["id"], "applied")]
    flag_data = api.get("/api/flags/checkout?environment=production").json()
    assert (flag_data["enabled"], flag_data["rules"]) == (True, rules)


@pytest.mark.parametrize("overrides, fields", [
    ({"runAt": "2026-12-04T07:59:00Z"}, ["runAt"]),  # the past (the clock says 08:00Z)
    ({"runAt": "tomorrow"}, ["runAt"]),
    ({"runAt": "9999-12-31T23:00:00-05:00"}, ["runAt"]),
    ({"runAt": "2026-02-30T09:00:00"}, ["runAt"]),
    ({"flag": "nope"}, ["flag"]),
    ({"environment": "moon"}, ["environment"]),
    ({"timezone": "Europe/Atlantis"}, ["timezone"]),
    ({"change": {"action": "update", "rules": [{"type": "geo", "operator": "near", "value": ["US"]}]}},
     ["change.rules[0].operator"]),
    ({"change": {"action": "update", "enabeld": True}}, ["change.enabeld"]),
    ({"change": {"action": "kill"}}, ["change.reason"]),
    ({"change": {"action": "fly"}}, ["change.action"]),
    ({"change": "enable"}, ["change"]),
    ({"color": "red"}, ["color"]),
])
def test_bad_input__400_field_paths__nothing_written(api, flag, clock, overrides, fields, world):
    before = world.snapshot()
    response = api.post("/api/scheduled-changes", body(**overrides))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], sorted(error["fields"])) == ("validation_error", fields)
    assert world.snapshot() == before and ScheduledChange.objects.count() == 0


def test_cancel_and_reschedule__200__then_409_when_no_longer_pending(api, flag, clock):
    first = api.post("/api/scheduled-changes", body()).json()
    second = api.post("/api/scheduled-changes", body(change={"action": "disable"})).json()
    moved = api.post(f"/api/scheduled-changes/{first['id']}/reschedule",
                     {"runAt": "2026-12-07T09:00:00", "timezone": "America/New_York"})
    assert moved.status_code == 200, moved.content
    assert (moved.json()["runAt"], moved.json()["runAtLocal"]) == ("2026-12-07T14:00:00Z",
                                                                   "2026-12-07 09:00 EST (America/New_York)")
    assert api.post(f"/api/scheduled-changes/{first['id']}/reschedule", {"runAt": "2020-01-01T00:00:00Z"}
                    ).status_code == 400
    cancelled = api.post(f"/api/scheduled-changes/{second['id']}/cancel", {"reason": "changed my mind"})
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    again = api.post(f"/api/scheduled-changes/{second['id']}/cancel", {})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "conflict")
    assert list(AuditEntry.objects.filter(action__startswith="schedule.").order_by("id")
                .values_list("action", flat=True)) == ["schedule.created", "schedule.created",
                                                       "schedule.rescheduled", "schedule.cancelled"]


def test_rollout_plan__create_201_with_steps__cancel(api, flag, clock):
    response = api.post("/api/rollout-plans", {"flag": "checkout", "environment": "production",
                                               "percentages": [10, 25, 50, 100], "at": "09:00",
                                               "timezone": "Europe/Berlin"})
    assert response.status_code == 201, response.content
    plan = response.json()
    assert [(s["step"], s["change"], s["runAtLocal"]) for s in plan["steps"]] == [
        (1, {"percentage": 10}, "2026-12-07 09:00 CET (Europe/Berlin)"),  # Friday 09:00 has passed (it is 09:00)
        (2, {"percentage": 25}, "2026-12-08 09:00 CET (Europe/Berlin)"),
        (3, {"percentage": 50}, "2026-12-09 09:00 CET (Europe/Berlin)"),
        (4, {"percentage": 100}, "2026-12-10 09:00 CET (Europe/Berlin)"),
    ]
    assert api.get("/api/rollout-plans").json()["count"] == 1
    cancelled = api.post(f"/api/rollout-plans/{plan['id']}/cancel", {})
    assert cancelled.status_code == 200
    assert [s["status"] for s in cancelled.json()["steps"]] == ["cancelled"] * 4
    bad = api.post("/api/rollout-plans", {"flag": "checkout", "percentages": [50, 10], "at": "9am"})
    assert (bad.status_code, sorted(bad.json()["error"]["fields"])) == (400, ["at", "percentages"])
    assert RolloutPlan.objects.count() == 1


def test_project_paths__a_projects_changes_only(api, flag, clock):
    project_services.project_create(actor=SYSTEM, key="team-b", name="Team B")
    with scope.using("team-b"):
        create_flag("checkout")
    made = api.post("/api/projects/team-b/scheduled-changes", body())
    assert made.status_code == 201, made.content
    assert made["Location"] == f"/api/projects/team-b/scheduled-changes/{made.json()['id']}"
    assert api.get("/api/scheduled-changes").json()["count"] == 0
    assert api.get("/api/projects/team-b/scheduled-changes").json()["count"] == 1
    assert api.get(f"/api/scheduled-changes/{made.json()['id']}").status_code == 404
    clock.advance(hours=2)
    services.apply_due()
    with scope.using("team-b"):
        assert AuditEntry.objects.filter(action="flag.toggled", project="team-b").count() == 1


def test_sdk_key_and_reader__refused(flag, clock, db):
    sdk = Client(make_key("sdk", environment="production"))
    assert sdk.get("/api/scheduled-changes").status_code == 403
    assert sdk.post("/api/scheduled-changes", body()).status_code == 403
    assert ScheduledChange.objects.count() == 0
