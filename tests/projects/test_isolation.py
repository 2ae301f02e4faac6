"""Keys of one project see nothing of another: evaluation surfaces resolve the project from the
key; management paths of another project answer 404 exactly like a project that does not exist."""

import pytest

from audit.models import AuditEntry
from flags.models import Flag
from segments.models import Segment

pytestmark = pytest.mark.django_db


def test_same_flag_key_in_two_projects__evaluates_independently(two_projects, client_for):
    a = client_for(two_projects["a_sdk"]).post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    b = client_for(two_projects["b_sdk"]).post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    assert (a.status_code, a.json()["enabled"]) == (200, True)
    assert (b.status_code, b.json()["enabled"]) == (200, False)
    assert Flag.all_objects.filter(key="checkout").count() == 2


def test_sdk_key__flag_of_another_project__answers_like_an_unknown_flag(two_projects, client_for):
    other = client_for(two_projects["a_sdk"]).post("/api/evaluate", {"flagId": "b-only", "userId": "u1"})
    unknown = client_for(two_projects["a_sdk"]).post("/api/evaluate", {"flagId": "no-such-flag", "userId": "u1"})
    assert other.status_code == unknown.status_code
    assert other.json()["reason"] == unknown.json()["reason"]
    assert client_for(two_projects["b_sdk"]).post(
        "/api/evaluate", {"flagId": "b-only", "userId": "u1"}).json()["enabled"] is True


def test_bulk_and_snapshot__only_the_keys_project(two_projects, client_for):
    a, b = client_for(two_projects["a_sdk"]), client_for(two_projects["b_sdk"])
    bulk_a = a.post("/api/evaluate/bulk", {"userId": "u1"}).json()
    bulk_b = b.post("/api/evaluate/bulk", {"userId": "u1"}).json()
    assert set(bulk_a["flags"]) == {"checkout"}
    assert set(bulk_b["flags"]) == {"checkout", "b-only"}
    snap_a, snap_b = a.get("/api/sdk/snapshot").json(), b.get("/api/sdk/snapshot").json()
    assert [f["key"] for f in snap_a["flags"]] == ["checkout"] and set(snap_a["segments"]) == {"beta"}
    assert [f["key"] for f in snap_b["flags"]] == ["b-only", "checkout"] and snap_b["segments"] == {}
    assert [f["enabled"] for f in snap_b["flags"]] == [True, False]


def test_sdk_key__may_name_its_own_environment_by_key(two_projects, client_for):
    b = client_for(two_projects["b_sdk"])
    ok = b.post("/api/evaluate", {"flagId": "b-only", "userId": "u1", "environment": "production"})
    refused = b.post("/api/evaluate", {"flagId": "b-only", "userId": "u1", "environment": "staging"})
    assert ok.status_code == 200 and refused.status_code == 403


def test_ofrep__only_the_keys_project(two_projects, client_for):
    a, b = client_for(two_projects["a_sdk"]), client_for(two_projects["b_sdk"])
    assert a.post("/ofrep/v1/evaluate/flags/b-only", {"context": {"targetingKey": "u1"}}).status_code == 404
    answer = b.post("/ofrep/v1/evaluate/flags/b-only", {"context": {"targetingKey": "u1"}})
    assert answer.status_code == 200 and answer.json()["value"] is True
    bulk = a.post("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "u1"}}).json()
    assert {f["key"] for f in bulk["flags"]} == {"checkout"}


MANAGEMENT_PATHS = ["flags", "flags/checkout", "segments", "audit", "environments", "audit/flag/checkout"]


@pytest.mark.parametrize("path", MANAGEMENT_PATHS)
def test_narrowed_token__other_project__404_like_a_missing_project(two_projects, client_for, path):
    a_token = client_for(two_projects["a_token"])
    other = a_token.get(f"/api/projects/team-b/{path}")
    missing = a_token.get(f"/api/projects/no-such-project/{path}")
    assert other.status_code == missing.status_code == 404
    assert other.json() == missing.json()
    assert a_token.get(f"/api/projects/default/{path}").status_code == 200
    assert a_token.get(f"/api/{path}").status_code == 200  # the unprefixed paths: the default project's
    b_token = client_for(two_projects["b_token"])
    assert b_token.get(f"/api/{path}").status_code == 404
    assert b_token.get(f"/api/projects/team-b/{path}").status_code == 200


def test_sdk_key__another_projects_management_path__404(two_projects, client_for):
    a = client_for(two_projects["a_sdk"])
    assert a.get("/api/projects/team-b/flags").status_code == 404
    assert a.get("/api/projects/default/flags").status_code == 403  # its own: SDK keys do not manage


def test_project_paths__each_project_its_own_flags_segments_audit(two_projects, client_for):
    token = client_for(two_projects["any_token"])
    default = token.get("/api/projects/default/flags?environment=production").json()["results"]
    team_b = token.get("/api/projects/team-b/flags?environment=production").json()["results"]
    assert [(f["key"], f["enabled"]) for f in default] == [("checkout", True)]
    assert [(f["key"], f["enabled"]) for f in team_b] == [("b-only", True), ("checkout", False)]
    assert token.get("/api/flags?environment=production").json()["results"] == default
    assert [s["key"] for s in token.get("/api/projects/team-b/segments").json()["results"]] == []
    audit_b = token.get("/api/projects/team-b/audit").json()["results"]
    assert {e["targetKey"] for e in audit_b} >= {"checkout", "b-only"}
    assert all(e["targetType"] != "segment" for e in audit_b)
    assert {e.project for e in AuditEntry.objects.filter(target_key="b-only")} == {"team-b"}


def test_project_path__writes_stay_in_their_project(two_projects, client_for, django_capture_on_commit_callbacks):
    token = client_for(two_projects["any_token"])
    toggled = token.patch("/api/projects/team-b/flags/checkout/toggle?environment=production", {"enabled": True})
    assert toggled.status_code == 200 and toggled.json()["enabled"] is True
    created = token.post("/api/projects/team-b/segments", {"key": "beta", "name": "B beta", "conditions": {}})
    assert created.status_code == 201  # segment keys are unique per project: "beta" exists in default
    assert Segment.all_objects.filter(key="beta").count() == 2
    a = client_for(two_projects["a_sdk"]).post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    b = client_for(two_projects["b_sdk"]).post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    assert a.json()["enabled"] is True and b.json()["enabled"] is True
    with django_capture_on_commit_callbacks(execute=True):  # the snapshot re-check after commit
        assert token.patch("/api/flags/checkout/toggle?environment=production", {"enabled": False}).status_code == 200
    a = client_for(two_projects["a_sdk"]).post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    b = client_for(two_projects["b_sdk"]).post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    assert a.json()["enabled"] is False and b.json()["enabled"] is True


def test_projects_list__a_narrowed_token_sees_its_project_only(two_projects, client_for):
    assert [p["key"] for p in client_for(two_projects["any_token"]).get("/api/projects").json()] == \
        ["default", "team-b"]
    assert [p["key"] for p in client_for(two_projects["b_token"]).get("/api/projects").json()] == ["team-b"]
