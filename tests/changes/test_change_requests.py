"""Change requests (four eyes) for protected environments: the rule cannot be bypassed from any
surface (REST, admin and its bulk actions, dashboard, services and commands) by any role, in a
protected environment, while the unprotected ones work as before; the kill switch is never held;
reviews (never one's own), amend, withdraw, conflict and rebase; one apply for two appliers."""

import json
import threading

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client as PageClient

from audit.actor import Actor
from audit.models import AuditEntry
from changes import approvals
from changes.models import ChangeRequest, ProtectedEnvironment
from flags import services as flag_services
from flags.errors import ApprovalRequired, Conflict, Forbidden
from flags.models import Flag, FlagState
from tests.api.conftest import SYSTEM, Client

pytestmark = pytest.mark.django_db

ROLES = ("editor", "approver", "admin")


def actor(user):
    return Actor.for_user(user, request_id="r", ip="127.0.0.1")


@pytest.fixture
def protected(db):
    approvals.protection_set(actor=SYSTEM, environment="production", required_approvals=1)


def state(env="production", key="checkout"):
    return FlagState.objects.get(flag__key=key, environment__key=env)


def api_as(user):
    client = Client()
    client.force_login(user)
    return client


def open_request(user, *, title="Turn checkout on", change=None, env="production"):
    change = change or {"action": "enable"}
    response = api_as(user).post("/api/change-requests", {"flag": "checkout", "environment": env, "title": title,
                                                          "change": change})
    assert response.status_code == 201, response.content
    return response.json()


# -- protection: REST -----------------------------------------------------------------------------

def test_protection_rest__get_put_delete__admins_only__audited(people):
    admin, editor = api_as(people["admin"]), api_as(people["editor"])
    assert admin.get("/api/environments/production/protection").json() == {
        "environment": "production", "protected": False, "requiredApprovals": None}
    assert editor.put("/api/environments/production/protection", {"requiredApprovals": 2}).status_code == 403
    assert admin.put("/api/environments/production/protection", {"requiredApprovals": 0}).json()["error"][
        "fields"] == {"requiredApprovals": ["Ensure this value is greater than or equal to 1."]}
    response = admin.put("/api/projects/default/environments/production/protection", {"requiredApprovals": 2})
    assert response.json() == {"environment": "production", "protected": True, "requiredApprovals": 2}
    assert editor.get("/api/environments/production/protection").json()["requiredApprovals"] == 2
    assert admin.get("/api/environments/moon/protection").status_code == 404
    assert admin.delete("/api/environments/production/protection").json()["protected"] is False
    assert list(AuditEntry.objects.filter(target_type="environment").order_by("id").values_list("action", flat=True)) == [
        "environment.protected", "environment.unprotected"]


# -- the four-eyes rule: surface x role x protected / unprotected --------------------------------

def _rest(path, method="patch", body=None):
    def call(user, env):
        client = api_as(user)
        sep = "&" if "?" in path else "?"
        response = getattr(client, method)(f"{path}{sep}environment={env}", body)
        if response.status_code == 409:
            error = response.json()["error"]
            assert error["code"] == "approval_required", error
            assert error["changeRequests"] == "/api/change-requests"
            return "refused"
        assert response.status_code < 300, response.content
        return "done"
    return call


def _page(path, data, json_body=False):
    def call(user, env):
        client = PageClient()
        client.force_login(user)
        body = {**data, "environment": env}
        if json_body:
            import json

            response = client.post(path, json.dumps(body), content_type="application/json")
            return "refused" if response.status_code == 409 or b"approval" in response.content else "done"
        response = client.post(path, body, follow=True)
        text = response.content.decode()
        return "refused" if "needs an approved change request" in text else "done"
    return call


def _admin_action(action, extra=None):
    def call(user, env):
        client = PageClient()
        client.force_login(user)
        flag = Flag.objects.get(key="checkout")
        response = client.post("/admin/flags/flag/", {"action": action, "_selected_action": [flag.pk],
                                                      "environment": env, **(extra or {})}, follow=True)
        return "refused" if "needs an approved change request" in response.content.decode() else "done"
    return call


def _admin_form(user, env):
    from tests.flags.test_admin import change_form_data

    client = PageClient()
    client.force_login(user)
    flag = Flag.objects.get(key="checkout")
    response = client.post(f"/admin/flags/flag/{flag.pk}/change/", change_form_data(flag, **{env: {"enabled": True}}),
                           follow=True)
    return "refused" if "needs an approved change request" in response.content.decode() else "done"


def _service(operation):
    def call(user, env):
        flag = Flag.objects.get(key="checkout")
        try:
            if operation == "toggle":
                flag_services.flag_toggle(actor=actor(user), flag=flag, environment=env, enabled=True)
            elif operation == "rules":
                flag_services.flag_update(actor=actor(user), flag=flag, environment=env, data={
                    "rules": [{"type": "percentage", "operator": "less_than", "value": 5}]})
            elif operation == "variants":
                flag_services.flag_update(actor=actor(user), flag=flag, environment=None, data={
                    "kind": "multivariate", "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1}]})
        except ApprovalRequired:
            return "refused"
        return "done"
    return call


def _command_restore(user, env):
    call_command("kill_switch", "checkout", "--reason", "r", "-e", env)  # the kill: never held
    assert state(env).killed
    try:
        call_command("kill_switch", "checkout", "--restore", "-e", env)
    except Exception as exc:  # CommandError with the service's message
        assert "needs an approved change request" in str(exc)
        return "refused"
    return "done"


SURFACES = {
    "rest toggle": _rest("/api/flags/checkout/toggle", body={"enabled": True}),
    "rest rules": _rest("/api/flags/checkout", body={"rules": [{"type": "percentage", "operator": "less_than",
                                                                "value": 5}]}),
    "rest archive": _rest("/api/flags/checkout", "delete"),
    "rest project-mounted toggle": _rest("/api/projects/default/flags/checkout/toggle", body={"enabled": True}),
    "admin change form": _admin_form,
    "admin bulk turn_on": _admin_action("turn_on"),
    "admin bulk archive": _admin_action("archive"),
    "dashboard toggle": _page("/flags/checkout/toggle", {"enabled": "true", "version": "1"}),
    "dashboard targeting": _page("/flags/checkout/targeting", {"version": 1, "rules": [
        {"type": "user", "operator": "in", "value": ["u1"]}]}, json_body=True),
    "service toggle": _service("toggle"),
    "service rules": _service("rules"),
    "service variants (every environment)": _service("variants"),
    "command restore": _command_restore,
}
WHO = ("editor", "approver", "admin", "superuser")
EVERY_ENVIRONMENT = {"rest archive", "admin bulk archive", "service variants (every environment)"}  # production too


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("env", ["production", "staging"])
def test_four_eyes_matrix__direct_writes_refused_only_in_the_protected_environment(people, checkout, protected,
                                                                                   surface, who, env, world):
    before = world.snapshot()
    outcome = SURFACES[surface](people[who], env)
    if env == "production" or surface in EVERY_ENVIRONMENT:
        assert outcome == "refused"
        after = world.snapshot()
        if surface == "command restore":  # the kill went through: one killed state, nothing else
            assert state(env).killed
        else:
            assert after == before, "a refused write wrote something"
    else:
        assert outcome == "done"
        assert world.snapshot() != before


def test_kill_switch_never_held__rest_admin_dashboard_service(people, checkout, protected):
    response = api_as(people["editor"]).post("/api/flags/checkout/kill-switch",
                                             {"reason": "incident", "environments": ["production"]})
    assert response.status_code == 200, response.content
    assert state().killed
    entry = AuditEntry.objects.filter(action="flag.killed").latest("id")
    assert (entry.environment, entry.actor) == ("production", "ed")
    with pytest.raises(ApprovalRequired):  # undoing it is a change like any other
        flag_services.flag_restore(actor=actor(people["admin"]), flag=Flag.objects.get(key="checkout"),
                                   environments=["production"])
    assert approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                         title="restore", operation="restore", payload={}).status == "open"
    with pytest.raises(Exception) as refused:
        approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                      title="kill", operation="kill", payload={"reason": "r"})
    assert "never held" in str(refused.value)


def test_create_flag_on_in_a_protected_environment__refused__off_is_fine(people, protected):
    client = api_as(people["admin"])
    refused = client.post("/api/flags", {"key": "new", "name": "New", "states": {"production": {"enabled": True}}})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "approval_required"
    assert client.post("/api/flags", {"key": "new", "name": "New"}).status_code == 201


def test_descriptive_fields_and_tags_are_not_held(people, checkout, protected):
    client = api_as(people["editor"])
    assert client.patch("/api/flags/checkout?environment=production", {"description": "why"}).status_code == 200


# -- the request's life ---------------------------------------------------------------------------

def test_open_review_apply__through_rest__audit_names_author_and_approver(people, checkout, protected):
    cr = open_request(people["author"])
    assert (cr["status"], cr["diff"], cr["baseVersion"], cr["requiredApprovals"]) == (
        "open", {"enabled": {"before": False, "after": True}}, 1, 1)
    assert not state().enabled
    apu = api_as(people["approver"])
    assert apu.post(f"/api/change-requests/{cr['id']}/apply").status_code == 409  # no approval yet
    reviewed = apu.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve", "comment": "lgtm"}).json()
    assert (reviewed["status"], reviewed["approvals"]) == ("approved", ["apu"])
    applied = apu.post(f"/api/change-requests/{cr['id']}/apply")
    assert applied.status_code == 200, applied.content
    assert (applied.json()["status"], applied.json()["appliedBy"]) == ("applied", "apu")
    assert state().enabled
    flag_entry = AuditEntry.objects.filter(action="flag.toggled").latest("id")
    assert flag_entry.actor == f"apu applying change request #{cr['id']} by ann, approved by apu"
    entry = AuditEntry.objects.filter(action="change_request.applied").latest("id")
    assert (entry.after["author"], entry.after["approvers"], entry.after["appliedBy"]) == ("ann", ["apu"], "apu")
    assert entry.pk == flag_entry.pk + 1  # the same transaction, in order
    actions = list(AuditEntry.objects.filter(target_type="change_request").order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["change_request.opened", "change_request.approved", "change_request.applied"]
    assert apu.post(f"/api/change-requests/{cr['id']}/apply").status_code == 409  # once
    listed = apu.get("/api/projects/default/change-requests?status=applied&flag=checkout").json()["results"]
    assert [row["id"] for row in listed] == [cr["id"]]


@pytest.mark.parametrize("who", ["author", "editor", "superuser_author"])
def test_approve_your_own_request__or_without_the_role__refused(people, checkout, protected, who):
    if who == "superuser_author":  # even a superuser cannot approve what they opened
        author = people["superuser"]
        cr = open_request(author)
        reviewer = author
    else:
        cr = open_request(people["author"])
        reviewer = people[who]
    response = api_as(reviewer).post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve"})
    assert response.status_code == 403, response.content
    assert ChangeRequest.objects.get(pk=cr["id"]).reviews.count() == 0
    assert api_as(people["approver"]).post(f"/api/change-requests/{cr['id']}/apply").status_code == 409
    assert not state().enabled


def test_apply_without_enough_approvals__refused__editor_may_not_apply(people, checkout):
    approvals.protection_set(actor=SYSTEM, environment="production", required_approvals=2)
    cr = open_request(people["author"])
    apu, abe = api_as(people["approver"]), api_as(people["approver2"])
    assert apu.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve"}).json()["status"] == "open"
    assert apu.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve"}).json()["approvals"] == ["apu"]
    refused = apu.post(f"/api/change-requests/{cr['id']}/apply")
    assert (refused.status_code, refused.json()["error"]["message"]) == (
        409, f"Change request #{cr['id']} has 1 of the 2 approvals it needs.")
    assert abe.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve"}).json()["status"] == "approved"
    assert api_as(people["author"]).post(f"/api/change-requests/{cr['id']}/apply").status_code == 403
    assert api_as(people["editor"]).post(f"/api/change-requests/{cr['id']}/apply").status_code == 403
    assert not state().enabled
    assert abe.post(f"/api/change-requests/{cr['id']}/apply").status_code == 200
    assert state().enabled


def test_amend_resets_approvals__only_the_author_amends_or_withdraws(people, checkout, protected):
    cr = open_request(people["author"])
    apu = api_as(people["approver"])
    assert apu.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve"}).json()["status"] == "approved"
    rules = [{"type": "percentage", "operator": "less_than", "value": 10}]
    assert api_as(people["editor"]).post(f"/api/change-requests/{cr['id']}/amend",
                                         {"title": "mine now"}).status_code == 403
    amended = api_as(people["author"]).post(f"/api/change-requests/{cr['id']}/amend", {
        "change": {"action": "update", "enabled": True, "rules": rules}}).json()
    assert (amended["status"], amended["revision"], amended["approvals"]) == ("open", 2, [])
    assert amended["diff"]["rules"] == {"before": [], "after": rules}
    assert apu.post(f"/api/change-requests/{cr['id']}/apply").status_code == 409
    assert api_as(people["approver"]).post(f"/api/change-requests/{cr['id']}/withdraw").status_code == 403
    withdrawn = api_as(people["author"]).post(f"/api/change-requests/{cr['id']}/withdraw", {"reason": "later"})
    assert withdrawn.json()["status"] == "withdrawn"
    assert apu.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve"}).status_code == 409


def test_reject_ends_it__request_changes_withdraws_an_approval(people, checkout):
    approvals.protection_set(actor=SYSTEM, environment="production", required_approvals=1)
    cr = open_request(people["author"])
    apu = api_as(people["approver"])
    apu.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "approve"})
    again = apu.post(f"/api/change-requests/{cr['id']}/review", {"verdict": "request_changes", "comment": "10%"})
    assert (again.json()["status"], again.json()["approvals"]) == ("open", [])
    rejected = api_as(people["approver2"]).post(f"/api/change-requests/{cr['id']}/review", {"verdict": "reject"})
    assert rejected.json()["status"] == "rejected"
    assert apu.post(f"/api/change-requests/{cr['id']}/apply").status_code == 409


def test_conflict__marked__three_way__rebase__reviewed_again__applied(people, checkout, protected):
    cr = open_request(people["author"], change={"action": "update", "rules": [
        {"type": "percentage", "operator": "less_than", "value": 10}]})
    approvals.change_request_review(actor=actor(people["approver"]), verdict="approve",
                                    change_request=ChangeRequest.objects.get(pk=cr["id"]))
    other = open_request(people["editor"], title="on")  # applied first: the flag moves on
    approvals.change_request_review(actor=actor(people["approver2"]), verdict="approve",
                                    change_request=ChangeRequest.objects.get(pk=other["id"]))
    approvals.change_request_apply(actor=actor(people["approver2"]),
                                   change_request=ChangeRequest.objects.get(pk=other["id"]))
    refused = api_as(people["approver"]).post(f"/api/change-requests/{cr['id']}/apply")
    assert refused.status_code == 409 and "rebase" in refused.json()["error"]["message"]
    row = ChangeRequest.objects.get(pk=cr["id"])
    assert row.status == "conflict" and state().rules == []
    view = approvals.three_way(row)
    assert view["currentVersion"] == 2
    assert {r["field"]: (r["base"], r["current"], r["proposed"]) for r in view["rows"]} == {
        "enabled": (False, True, False),
        "rules": ([], [], [{"type": "percentage", "operator": "less_than", "value": 10}])}
    rebased = api_as(people["author"]).post(f"/api/change-requests/{cr['id']}/rebase").json()
    assert (rebased["status"], rebased["baseVersion"], rebased["revision"]) == ("open", 2, 2)
    assert rebased["diff"] == {"rules": {"before": [], "after": [
        {"type": "percentage", "operator": "less_than", "value": 10}]}}
    approvals.change_request_review(actor=actor(people["approver"]), verdict="approve",
                                    change_request=ChangeRequest.objects.get(pk=cr["id"]))
    approvals.change_request_apply(actor=actor(people["approver"]), change_request=ChangeRequest.objects.get(pk=cr["id"]))
    assert (state().enabled, state().rules[0]["value"]) == (True, 10)


@pytest.mark.parametrize("body, fields", [
    ({"flag": "nope", "title": "t", "change": {"action": "enable"}}, ["flag"]),
    ({"flag": "checkout", "title": "", "change": {"action": "enable"}}, ["title"]),
    ({"flag": "checkout", "title": "t", "change": {"action": "fly"}}, ["change.action"]),
    ({"flag": "checkout", "title": "t", "change": {"action": "kill", "reason": "r"}}, ["change.action"]),
    ({"flag": "checkout", "title": "t", "change": {"action": "update", "enabeld": True}}, ["change.enabeld"]),
    ({"flag": "checkout", "title": "t", "change": {"action": "disable"}}, ["change"]),  # already off
    ({"flag": "checkout", "title": "t", "change": {"action": "enable"}, "color": "red"}, ["color"]),
    ({"flag": "checkout", "title": 5, "change": {"action": "enable"}}, ["title"]),
])
def test_bad_input__400_field_paths__nothing_written(people, checkout, protected, body, fields, world):
    before = world.snapshot()
    response = api_as(people["author"]).post("/api/change-requests?environment=production", body)
    assert response.status_code == 400, response.content
    assert sorted(response.json()["error"]["fields"]) == fields
    assert world.snapshot() == before and not ChangeRequest.objects.exists()


def test_scheduled_change_in_a_protected_environment__refused_409__kill_may_be_scheduled(people, checkout, protected,
                                                                                         clock):
    from changes import services as change_services

    who = actor(people["superuser"])
    with pytest.raises(ApprovalRequired):
        change_services.scheduled_change_create(actor=who, flag=checkout, environment="production",
                                                operation="enable", run_at="2026-12-05T09:00:00Z")
    change_services.scheduled_change_create(actor=who, flag=checkout, environment="production", operation="kill",
                                            payload={"reason": "window closes"}, run_at="2026-12-05T09:00:00Z")
    change_services.scheduled_change_create(actor=who, flag=checkout, environment="staging", operation="enable",
                                            run_at="2026-12-05T09:00:00Z")


def test_an_approved_request_scheduled__fires_once_through_its_rules__an_open_one_cannot_be(people, checkout,
                                                                                          protected, clock):
    from changes import services as change_services
    from changes.models import ScheduledChange

    cr = ChangeRequest.objects.get(pk=open_request(people["author"])["id"])
    apu = api_as(people["approver"])
    refused = apu.post(f"/api/change-requests/{cr.pk}/schedule", {"runAt": "2026-12-04T10:00:00Z"})
    assert refused.status_code == 409 and not ScheduledChange.objects.exists()  # not approved yet
    apu.post(f"/api/change-requests/{cr.pk}/review", {"verdict": "approve"})
    assert api_as(people["author"]).post(f"/api/change-requests/{cr.pk}/schedule",
                                         {"runAt": "2026-12-04T10:00:00Z"}).status_code == 403  # an editor
    response = apu.post(f"/api/change-requests/{cr.pk}/schedule", {"runAt": "2026-12-04T10:00:00+01:00",
                                                                   "timezone": "Europe/Berlin"})
    assert response.status_code == 201, response.content
    assert (response.json()["changeRequest"], response.json()["action"]) == (cr.pk, "enable")
    assert apu.post(f"/api/change-requests/{cr.pk}/schedule", {"runAt": "2026-12-04T11:00:00Z"}).status_code == 409
    clock.advance(hours=1, minutes=1)
    assert change_services.apply_due() == [(response.json()["id"], "applied")]
    assert state().enabled and ChangeRequest.objects.get(pk=cr.pk).status == "applied"
    entry = AuditEntry.objects.filter(action="change_request.applied").get()
    assert entry.actor.startswith(f"scheduled change #{response.json()['id']} by apu")
    assert entry.after["approvers"] == ["apu"]


def test_a_scheduled_request_whose_flag_moved__fails_as_a_conflict(people, checkout, protected, clock):
    from changes import services as change_services
    from changes.models import ScheduledChange

    cr = approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                       title="on", operation="enable")
    approvals.change_request_review(actor=actor(people["approver"]), change_request=cr, verdict="approve")
    change = approvals.change_request_schedule(actor=actor(people["approver"]), change_request=cr,
                                               run_at="2026-12-04T09:00:00Z")
    flag_services.flag_kill(actor=actor(people["editor"]), flag=checkout, reason="incident",
                            environments=["production"])  # the kill is never held; the flag moved on
    clock.advance(hours=1, minutes=1)
    assert change_services.apply_due() == [(change.pk, "failed")]
    assert "rebase" in ScheduledChange.objects.get(pk=change.pk).result
    assert ChangeRequest.objects.get(pk=cr.pk).status == "conflict" and not state().enabled


def test_operator_command_line_cannot_review(people, checkout, protected):
    cr = ChangeRequest.objects.get(pk=open_request(people["author"])["id"])
    with pytest.raises(Forbidden):
        approvals.change_request_review(actor=SYSTEM, change_request=cr, verdict="approve")


# -- two appliers at once -------------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # the seeded rows stay
def test_concurrent_apply__applied_once(people, checkout, protected):
    """PostgreSQL only (the marker): row locks across connections."""
    cr = ChangeRequest.objects.get(pk=open_request(people["author"], change={"action": "update", "rules": [
        {"type": "percentage", "operator": "less_than", "value": 30}]})["id"])
    for who in ("approver", "approver2"):
        approvals.change_request_review(actor=actor(people[who]), verdict="approve", change_request=cr)
    barrier, outcomes = threading.Barrier(4), []

    def apply(user):
        try:
            barrier.wait()
            approvals.change_request_apply(actor=actor(user), change_request=ChangeRequest.objects.get(pk=cr.pk))
            outcomes.append("applied")
        except Conflict as exc:
            outcomes.append(f"conflict: {exc.message}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=apply, args=(people[who],))
               for who in ("approver", "approver2", "admin", "superuser")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes.count("applied") == 1, outcomes
    assert all("applied already" in o for o in outcomes if o != "applied"), outcomes
    assert AuditEntry.objects.filter(action="change_request.applied").count() == 1
    assert AuditEntry.objects.filter(action="flag.updated", environment="production").count() == 1
    assert state().version == 2


# -- dashboard and admin --------------------------------------------------------------------------

def page_as(user):
    client = PageClient()
    client.force_login(user)
    return client


def test_dashboard__propose__badge__pending_list__approve_and_apply_as_another(people, checkout, protected):
    ann, apu = page_as(people["author"]), page_as(people["approver"])
    flag_page = ann.get("/flags/checkout").content.decode()
    assert "Protected: changes need 1 approval" in flag_page and "the kill switch applies at once" in flag_page
    response = ann.post("/flags/checkout/propose", {"environment": "production", "action": "enable",
                                                    "title": "Launch checkout"})
    cr = ChangeRequest.objects.get()
    assert response["Location"] == f"/changes/{cr.pk}"
    assert "1 pending" in ann.get("/flags/checkout").content.decode()
    assert "1 of 1 approval" not in ann.get(f"/changes/{cr.pk}").content.decode()
    assert "Launch checkout" in apu.get("/changes/pending").content.decode()
    assert ann.post(f"/changes/{cr.pk}/review", {"verdict": "approve"}).status_code == 403  # an editor
    mine = approvals.change_request_open(actor=actor(people["approver2"]), flag="checkout", environment="staging",
                                         title="mine", operation="enable")
    own = page_as(people["approver2"]).post(f"/changes/{mine.pk}/review", {"verdict": "approve"}, follow=True)
    assert "a second person must review it" in own.content.decode() and not mine.reviews.exists()
    assert apu.post(f"/changes/{cr.pk}/apply", follow=True).status_code == 200 and not state().enabled
    apu.post(f"/changes/{cr.pk}/review", {"verdict": "approve", "comment": "ok"})
    page = apu.post(f"/changes/{cr.pk}/apply", follow=True).content.decode()
    assert "Applied by apu" in page and state().enabled
    assert "1 pending" in ann.get("/flags/checkout").content.decode().split("<h1>")[1]  # "mine" only, was 2


def test_dashboard__conflict_shows_three_way__author_rebases(people, checkout, protected):
    cr = approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                       title="10%", operation="rollout", payload={"percentage": 10})
    approvals.change_request_review(actor=actor(people["approver"]), change_request=cr, verdict="approve")
    other = approvals.change_request_open(actor=actor(people["editor"]), flag="checkout", environment="production",
                                          title="rules", operation="update", payload={"rules": [
                                              {"type": "user", "operator": "in", "value": ["u1"]}]})
    approvals.change_request_review(actor=actor(people["approver2"]), change_request=other, verdict="approve")
    approvals.change_request_apply(actor=actor(people["approver2"]), change_request=other)
    page = page_as(people["approver"]).post(f"/changes/{cr.pk}/apply", follow=True).content.decode()
    assert "cr-three-way" in page and "Conflict: the flag changed" in page
    assert "Rebase onto the current version" in page_as(people["author"]).get(f"/changes/{cr.pk}").content.decode()
    page_as(people["author"]).post(f"/changes/{cr.pk}/rebase")
    assert ChangeRequest.objects.get(pk=cr.pk).status == "open"


def test_admin__approve_apply_actions__protection_through_the_services(people, checkout):
    root = page_as(people["superuser"])
    env = __import__("flags.models", fromlist=["Environment"]).Environment.objects.get(key="production")
    root.post("/admin/changes/protectedenvironment/add/", {"environment": env.pk, "required_approvals": 1})
    assert ProtectedEnvironment.objects.get().required_approvals == 1
    assert AuditEntry.objects.filter(action="environment.protected").count() == 1
    cr = approvals.change_request_open(actor=actor(people["superuser"]), flag="checkout", environment="production",
                                       title="on", operation="enable")
    changelist = "/admin/changes/changerequest/"
    own = root.post(changelist, {"action": "approve", "_selected_action": [cr.pk]}, follow=True).content.decode()
    assert "a second person must review it" in own
    apu = page_as(people["approver"])
    apu.post(changelist, {"action": "apply", "_selected_action": [cr.pk]})
    assert not state().enabled  # no approval yet
    apu.post(changelist, {"action": "approve", "_selected_action": [cr.pk]})
    apu.post(changelist, {"action": "apply", "_selected_action": [cr.pk]})
    assert state().enabled and ChangeRequest.objects.get().status == "applied"
    assert "<table>" in root.get(f"/admin/changes/changerequest/{cr.pk}/change/").content.decode()


def test_webhooks_follow_the_request_through_the_audit_log(people, checkout, protected):
    from webhooks import services as webhook_services
    from webhooks.models import Delivery

    webhook, _ = webhook_services.webhook_create(actor=SYSTEM, url="http://127.0.0.1:1/h", events=[
        "change_request.opened", "change_request.approved", "change_request.applied", "change_request.closed",
        "flag.changed"])
    webhook_services.webhooks_dispatch()  # past entries: the cursor moves on
    Delivery.objects.all().delete()
    cr = approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                       title="on", operation="enable")
    approvals.change_request_review(actor=actor(people["approver"]), change_request=cr, verdict="approve")
    approvals.change_request_apply(actor=actor(people["approver"]), change_request=cr)
    withdrawn = approvals.change_request_open(actor=actor(people["author"]), flag="checkout",
                                              environment="production", title="off", operation="disable")
    approvals.change_request_withdraw(actor=actor(people["author"]), change_request=withdrawn)
    webhook_services.webhooks_dispatch()
    assert list(Delivery.objects.order_by("id").values_list("event", flat=True)) == [
        "change_request.opened", "change_request.approved", "flag.changed", "change_request.applied",
        "change_request.opened", "change_request.closed"]
    applied = Delivery.objects.get(event="change_request.applied")
    assert '"approvers":["apu"]' in applied.body and '"author":"ann"' in applied.body


# -- segments: shared by the flags, held where a protected environment uses them -----------------

@pytest.fixture
def segmented(db):
    """'outer' uses 'inner'; checkout's rules use 'outer' in the environment the test names."""
    from tests.api.conftest import create_segment

    create_segment("inner", {"plan": "premium"})
    create_segment("outer", [{"type": "segment", "operator": "in", "value": ["inner"]}])

    def use_in(env):
        flag_services.flag_update(actor=SYSTEM, flag=Flag.objects.get(key="checkout"), environment=env, data={
            "rules": [{"type": "segment", "operator": "in", "value": ["outer"]}]})
    return use_in


NEW_CONDITIONS = {"plan": "enterprise"}


def _segment_rest(path, method="patch"):
    def call(user, env):
        response = getattr(api_as(user), method)(path, {"conditions": NEW_CONDITIONS} if method == "patch" else None)
        if response.status_code == 409:
            error = response.json()["error"]
            if error["code"] == "approval_required":
                assert error["changeRequests"] == "/api/change-requests"
                return "refused"
            assert "is used by" in error["message"], error  # a segment in use is never deleted
            return "in use"
        assert response.status_code < 300, response.content
        return "done"
    return call


def _segment_admin_form(user, env):
    from segments.models import Segment

    segment = Segment.objects.get(key="inner")
    response = page_as(user).post(f"/admin/segments/segment/{segment.pk}/change/", {
        "name": "inner", "description": "", "conditions": '{"plan": "enterprise"}'}, follow=True)
    assert response.status_code == 200
    return "refused" if "needs an approved change request" in response.content.decode() else "done"


def _segment_admin_bulk_delete(user, env):
    from segments.models import Segment

    segment = Segment.objects.get(key="outer")
    response = page_as(user).post("/admin/segments/segment/", {
        "action": "delete_selected", "_selected_action": [segment.pk], "post": "yes"}, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    return "refused" if "needs an approved change request" in text else "in use" if "is used by" in text else "done"


def _segment_service(user, env):
    from segments import services as segment_services
    from segments.models import Segment

    try:
        segment_services.segment_update(actor=actor(user), segment=Segment.objects.get(key="inner"),
                                        data={"conditions": NEW_CONDITIONS})
    except ApprovalRequired:
        return "refused"
    return "done"


SEGMENT_SURFACES = {
    "rest segment conditions (used through another segment)": _segment_rest("/api/segments/inner"),
    "rest segment conditions (used directly)": _segment_rest("/api/segments/outer"),
    "rest project-mounted segment conditions": _segment_rest("/api/projects/default/segments/inner"),
    "rest segment delete": _segment_rest("/api/segments/outer", "delete"),
    "admin segment change form": _segment_admin_form,
    "admin segment bulk delete": _segment_admin_bulk_delete,
    "service segment update": _segment_service,
}
DELETES = {"rest segment delete", "admin segment bulk delete"}


@pytest.mark.parametrize("surface", SEGMENT_SURFACES)
@pytest.mark.parametrize("who", ("admin", "superuser"))
@pytest.mark.parametrize("env", ["production", "staging"])
def test_four_eyes_matrix__segments_used_in_a_protected_environment__held(people, checkout, segmented,
                                                                          surface, who, env, world):
    segmented(env)
    approvals.protection_set(actor=SYSTEM, environment="production", required_approvals=1)
    before = world.snapshot()
    outcome = SEGMENT_SURFACES[surface](people[who], env)
    if env == "production":
        assert outcome == "refused"
        assert world.snapshot() == before, "a refused write wrote something"
    elif surface in DELETES:  # used (unprotected): refused as before, for another reason
        assert outcome == "in use"
        assert world.snapshot() == before
    else:
        assert outcome == "done"
        assert world.snapshot() != before


def test_segments__name_and_description_not_held__unused_segment_free__unprotecting_frees_it(people, checkout,
                                                                                              segmented):
    segmented("production")
    approvals.protection_set(actor=SYSTEM, environment="production", required_approvals=1)
    admin = api_as(people["admin"])
    assert admin.patch("/api/segments/inner", {"name": "Premium plans", "description": "why"}).status_code == 200
    from tests.api.conftest import create_segment

    create_segment("unused", {"plan": "free"})
    assert admin.patch("/api/segments/unused", {"conditions": NEW_CONDITIONS}).status_code == 200
    assert admin.delete("/api/segments/unused").status_code == 204
    refused = admin.patch("/api/segments/inner", {"conditions": NEW_CONDITIONS})
    assert refused.status_code == 409
    assert "checkout in production" in refused.json()["error"]["message"]
    assert admin.delete("/api/environments/production/protection").status_code == 200
    assert admin.patch("/api/segments/inner", {"conditions": NEW_CONDITIONS}).status_code == 200


# -- closing someone else's stale request ---------------------------------------------------------

def test_withdraw__a_project_admin_closes_anothers_request__audited_naming_them__editor_approver_cannot(
        people, checkout, protected):
    cr = open_request(people["author"])
    for who in ("editor", "approver"):
        refused = api_as(people[who]).post(f"/api/change-requests/{cr['id']}/withdraw", {"reason": "stale"})
        assert refused.status_code == 403, refused.content
        assert "or a project admin" in refused.json()["error"]["message"]
    assert ChangeRequest.objects.get(pk=cr["id"]).status == "open"
    closed = api_as(people["admin"]).post(f"/api/change-requests/{cr['id']}/withdraw", {"reason": "stale since May"})
    assert closed.status_code == 200, closed.content
    assert closed.json()["status"] == "withdrawn"
    row = ChangeRequest.objects.get(pk=cr["id"])
    assert row.result == "withdrawn by ada (project admin): stale since May"
    entry = AuditEntry.objects.filter(action="change_request.withdrawn").get()
    assert (entry.actor, entry.reason, entry.after["withdrawnBy"], entry.after["byAuthor"], entry.after["author"]) == (
        "ada", "stale since May", "ada", False, "ann")
    again = api_as(people["admin"]).post(f"/api/change-requests/{cr['id']}/withdraw")
    assert again.status_code == 409  # closed once


def test_withdraw__dashboard__admin_sees_close_button__editor_does_not(people, checkout, protected):
    cr = approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                       title="on", operation="enable")
    assert 'id="withdraw-form"' not in page_as(people["editor"]).get(f"/changes/{cr.pk}").content.decode()
    assert page_as(people["editor"]).post(f"/changes/{cr.pk}/withdraw", follow=True).status_code == 200
    assert ChangeRequest.objects.get(pk=cr.pk).status == "open"
    admin = page_as(people["admin"])
    assert "Close (withdraw) as project admin" in admin.get(f"/changes/{cr.pk}").content.decode()
    page = admin.post(f"/changes/{cr.pk}/withdraw", {"reason": "stale"}, follow=True).content.decode()
    assert "withdrawn by ada (project admin): stale" in page
    assert ChangeRequest.objects.get(pk=cr.pk).status == "withdrawn"
    assert AuditEntry.objects.filter(action="change_request.withdrawn", actor="ada").count() == 1


# -- dashboard: a rules change proposed on its own page, and amended by its author ----------------

RULES = [{"type": "user", "operator": "in", "value": ["u1", "u2"]}]


def test_dashboard__propose_a_rules_change_in_a_protected_environment__then_amend_it(people, checkout, protected):
    ann = page_as(people["author"])
    form = ann.get("/flags/checkout/propose/change").content.decode()
    assert 'id="proposal-form"' in form and '<option value="production" selected' in form
    assert "propose-change-link" in ann.get("/flags/checkout").content.decode()
    response = ann.post("/flags/checkout/propose/change", {
        "environment": "production", "action": "update", "rules": json.dumps(RULES), "enabled": "true",
        "title": "Two users first", "description": "a pilot"})
    cr = ChangeRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/changes/{cr.pk}"
    assert (cr.operation, cr.payload, cr.revision, cr.author_label) == (
        "update", {"rules": RULES, "enabled": True}, 1, "ann")
    assert cr.diff == {"enabled": {"before": False, "after": True}, "rules": {"before": [], "after": RULES}}
    assert state().rules == [] and not state().enabled  # nothing changes before it is applied
    approvals.change_request_review(actor=actor(people["approver"]), change_request=cr, verdict="approve")
    assert ChangeRequest.objects.get().status == "approved"

    # only the author sees and uses the amend form
    assert "amend-link" in ann.get(f"/changes/{cr.pk}").content.decode()
    assert "amend-link" not in page_as(people["admin"]).get(f"/changes/{cr.pk}").content.decode()
    assert 'u2' in ann.get(f"/changes/{cr.pk}/amend").content.decode()  # prefilled with the proposal
    assert page_as(people["editor"]).get(f"/changes/{cr.pk}/amend").status_code == 403
    other = page_as(people["editor"]).post(f"/changes/{cr.pk}/amend", {"action": "update", "title": "mine",
                                                                       "rules": "[]"})
    assert other.status_code == 403 and ChangeRequest.objects.get().revision == 1
    amended = ann.post(f"/changes/{cr.pk}/amend", {"action": "update", "rules": json.dumps(
        [{"type": "user", "operator": "in", "value": ["u1"]}]), "enabled": "true", "title": "One user first",
        "description": "smaller pilot"})
    assert amended.status_code == 302
    cr = ChangeRequest.objects.get()
    assert (cr.title, cr.description, cr.revision, cr.status) == ("One user first", "smaller pilot", 2, "open")
    assert cr.payload == {"rules": [{"type": "user", "operator": "in", "value": ["u1"]}], "enabled": True}
    assert approvals.approvers(cr) == []  # the approval was for revision 1
    assert list(AuditEntry.objects.filter(target_type="change_request").order_by("id").values_list(
        "action", flat=True)) == ["change_request.opened", "change_request.approved", "change_request.amended"]


def test_dashboard__bad_rules__400_with_the_field_message__nothing_written(people, checkout, protected, world):
    ann = page_as(people["author"])
    before = world.snapshot()
    bad = ann.post("/flags/checkout/propose/change", {"environment": "production", "action": "update",
                                                      "rules": '[{"type": "user", "operator": "like"}]',
                                                      "title": "bad"})
    assert bad.status_code == 400
    page = bad.content.decode()
    assert 'id="rules-errors"' in page and "operator" in page
    assert "like" in page  # the operator's input is kept
    assert world.snapshot() == before and not ChangeRequest.objects.exists()
    cr = approvals.change_request_open(actor=actor(people["author"]), flag="checkout", environment="production",
                                       title="on", operation="enable")
    refused = ann.post(f"/changes/{cr.pk}/amend", {"action": "disable", "title": "off"})  # already off
    assert refused.status_code == 400 and "changes nothing" in refused.content.decode()
    assert ChangeRequest.objects.get().revision == 1


def test_protection_changes__audited__webhook_event_on_protect_and_unprotect(people):
    from webhooks import services as webhook_services
    from webhooks.models import Delivery

    webhook_services.webhook_create(actor=SYSTEM, url="http://127.0.0.1:1/h", events=["environment.protection_changed"])
    webhook_services.webhooks_dispatch()
    Delivery.objects.all().delete()
    admin = api_as(people["admin"])
    assert admin.put("/api/environments/production/protection", {"requiredApprovals": 1}).status_code == 200
    assert admin.delete("/api/environments/production/protection").status_code == 200
    webhook_services.webhooks_dispatch()
    deliveries = list(Delivery.objects.order_by("id"))
    assert [d.event for d in deliveries] == ["environment.protection_changed"] * 2
    assert '"action":"environment.unprotected"' in deliveries[1].body and '"actor":"ada"' in deliveries[1].body
