"""Project roles beyond the permission matrix (tests/security/test_permission_matrix.py): the
members API's answers and audit, group grants coming and going, may_approve, and members on the
dashboard and admin (switcher, lists, a refused write in another environment). Built on
tests/projects/conftest.py's two projects: "default" and "team-b"."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from audit.models import AuditEntry
from flags.models import Flag, FlagState
from projects import policy
from projects import services as project_services
from projects.models import Project, RoleGrant
from tests.api.conftest import SYSTEM, Client

pytestmark = pytest.mark.django_db


def member(username, project, role, environments=(), *, staff=True):
    user = get_user_model().objects.create_user(username, is_staff=staff)
    project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key=project), role=role, user=user,
                                environments=list(environments))
    return user


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_project_list__a_member_sees_only_their_projects(two_projects):
    api = logged_in(member("bea", "team-b", "viewer"))
    assert [p["key"] for p in api.get("/api/projects").json()] == ["team-b"]
    assert api.get("/api/projects/default/flags").status_code == 404  # as for a project that does not exist
    assert api.get("/api/projects/nope/flags").status_code == 404
    assert api.get("/api/flags").status_code == 404  # the default project's own paths: no role there
    assert api.get("/api/projects/team-b/flags").status_code == 200


def test_default_projects_unprefixed_paths__member_of_another_project_only__404_as_for_no_project(two_projects):
    """/api/flags is /api/projects/default/flags: to a member holding no role in the default project
    it answers as a project that does not exist, reads and writes, session and token alike, and
    writes nothing; with a role there, or to a user with no role anywhere (403), nothing changes."""
    from flags.services import api_key_create

    bea = member("bea", "team-b", "editor", staff=False)
    token = Client(api_key_create(actor=SYSTEM, name="bea", kind="management", user=bea)[1])  # not narrowed
    unknown = logged_in(bea).get("/api/projects/nope/flags")
    before = (Flag.all_objects.count(), AuditEntry.objects.count())
    for api in (logged_in(bea), token):
        for method, path, body in (("get", "/api/flags", None), ("get", "/api/flags/checkout", None),
                                   ("post", "/api/flags", {"key": "sneaky", "name": "Sneaky"}),
                                   ("patch", "/api/flags/checkout/toggle?environment=production", {"enabled": False}),
                                   ("get", "/api/segments", None), ("get", "/api/audit", None),
                                   ("get", "/api/environments", None)):
            answer = getattr(api, method)(path, body)
            assert (answer.status_code, answer.json()) == (404, unknown.json()), (method, path)
    assert token.post("/api/evaluate?environment=production", {"flagId": "checkout"}).status_code == 404
    assert (Flag.all_objects.count(), AuditEntry.objects.count()) == before
    assert token.get("/api/projects/team-b/flags").status_code == 200  # their own project, as before

    project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key="default"), role="viewer", user=bea)
    bea = get_user_model().objects.get(pk=bea.pk)  # grants are cached on the user object
    assert logged_in(bea).get("/api/flags").status_code == 200
    assert logged_in(bea).post("/api/flags", {"key": "sneaky", "name": "Sneaky"}).status_code == 403  # a viewer
    nobody = get_user_model().objects.create_user("nobody")  # no role anywhere, no permission: as before
    assert logged_in(nobody).get("/api/flags").status_code == 403


def test_environment_restricted_editor__refused_elsewhere_with_a_clear_message(two_projects):
    api = logged_in(member("dev", "team-b", "editor", ["development"]))
    refused = api.patch("/api/projects/team-b/flags/checkout/toggle?environment=production", {"enabled": True})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["code"], error["message"]) == (
        "permission_denied",
        "Your editor role in project 'team-b' is limited to development; this change touches production.")
    assert not FlagState.objects.get(flag__project_id="team-b", flag__key="checkout",
                                     environment__key="production").enabled
    allowed = api.patch("/api/projects/team-b/flags/checkout/toggle?environment=development", {"enabled": True})
    assert allowed.status_code == 200
    assert api.get("/api/projects/team-b/flags/checkout?environment=production").status_code == 200  # reads: all


def test_members_api__grant_list_revoke__audited(two_projects):
    admin = member("boss-b", "team-b", "admin")
    get_user_model().objects.create_user("newbie")
    Group.objects.create(name="qa")
    api = logged_in(admin)
    made = api.post("/api/projects/team-b/members", {"role": "editor", "user": "newbie",
                                                     "environments": ["development", "staging"]})
    assert made.status_code == 201
    assert made.json() == {"id": made.json()["id"], "role": "editor", "user": "newbie", "group": None,
                           "environments": ["development", "staging"]}
    assert api.post("/api/projects/team-b/members", {"role": "viewer", "group": "qa"}).status_code == 201
    listed = api.get("/api/projects/team-b/members").json()
    assert {(m["role"], m["user"], m["group"]) for m in listed} == {
        ("admin", "boss-b", None), ("editor", "newbie", None), ("viewer", None, "qa")}
    entry = AuditEntry.objects.filter(action="role.granted").latest("pk")
    assert (entry.project, entry.actor, entry.after["group"]) == ("team-b", "boss-b", "qa")

    assert api.delete(f"/api/projects/team-b/members/{made.json()['id']}").status_code == 204
    assert not RoleGrant.objects.filter(pk=made.json()["id"]).exists()
    assert AuditEntry.objects.filter(action="role.revoked", project="team-b").count() == 1
    # another project's grant is not there to revoke: 404, nothing revoked
    other = project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key="default"), role="viewer",
                                        group=Group.objects.get(name="qa"))
    assert api.delete(f"/api/projects/team-b/members/{other.pk}").status_code == 404
    assert RoleGrant.objects.filter(pk=other.pk).exists()


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"role": "editor", "user": "nobody"}, 400, "user"),
    ({"role": "editor", "group": "nogroup"}, 400, "group"),
    ({"role": "editor"}, 400, "user"),
    ({"role": "editor", "user": "newbie", "group": "qa"}, 400, "user"),
    ({"role": "owner", "user": "newbie"}, 400, "role"),
    ({"role": "editor", "user": "newbie", "environments": ["moon"]}, 400, "environments[0]"),
    ({"role": "admin", "user": "newbie", "environments": ["development"]}, 400, "environments"),
    ({"role": "admin", "user": "boss-b"}, 409, "role"),
    ({"role": "editor", "user": "newbie", "extra": 1}, 400, "extra"),
])
def test_members_api__bad_input__field_errors_nothing_written(two_projects, body, status, field):
    api = logged_in(member("boss-b", "team-b", "admin"))
    get_user_model().objects.create_user("newbie")
    Group.objects.create(name="qa")
    before = (RoleGrant.objects.count(), AuditEntry.objects.count())
    response = api.post("/api/projects/team-b/members", body)
    assert response.status_code == status, response.content
    assert field in response.json()["error"]["fields"]
    assert (RoleGrant.objects.count(), AuditEntry.objects.count()) == before


def test_keys_api__sdk_key_shown_once_and_revoked(two_projects):
    api = logged_in(member("boss-b", "team-b", "admin"))
    made = api.post("/api/projects/team-b/keys", {"name": "web", "kind": "sdk", "environment": "production"})
    assert made.status_code == 201 and made.json()["key"].startswith("sdk_production_")
    assert Client(made.json()["key"]).post("/api/evaluate", {"flagId": "b-only"}).json()["enabled"] is True
    listed = api.get("/api/projects/team-b/keys").json()
    assert "key" not in listed[0] and {k["name"] for k in listed} >= {"web"}
    assert api.delete(f"/api/projects/team-b/keys/{made.json()['id']}").status_code == 204
    assert api.post("/api/projects/team-b/keys", {"name": "x", "kind": "sdk", "environment": "moon"}).status_code == 400


def test_group_grant__comes_and_goes_with_the_group(two_projects):
    ops = Group.objects.create(name="team-b-editors")
    project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key="team-b"), role="editor", group=ops)
    user = get_user_model().objects.create_user("gina")
    api = logged_in(user)
    assert api.get("/api/projects/team-b/flags").status_code == 404
    user.groups.add(ops)
    assert api.patch("/api/projects/team-b/flags/checkout/toggle?environment=production",
                     {"enabled": True}).status_code == 200
    user.groups.remove(ops)  # e.g. the identity provider's group claim no longer lists it
    assert api.get("/api/projects/team-b/flags").status_code == 404


def test_may_approve__approvers_and_admins_in_their_environments(two_projects):
    staff = get_user_model().objects.create_user("staff")
    staff.user_permissions.add(Permission.objects.get(content_type__app_label="flags", codename="change_flag"))
    cases = {"viewer": member("v", "team-b", "viewer"), "editor": member("e", "team-b", "editor"),
             "approver": member("a", "team-b", "approver"), "admin": member("ad", "team-b", "admin"),
             "approver-dev": member("ad2", "team-b", "approver", ["development"])}
    assert {name: policy.may_approve(user, "team-b") for name, user in cases.items()} == {
        "viewer": False, "editor": False, "approver": True, "admin": True, "approver-dev": False}
    assert policy.may_approve(cases["approver-dev"], "team-b", ["development"])
    assert not policy.may_approve(cases["approver"], "default")
    assert policy.may_approve(staff, "team-b") and policy.may_approve(staff, "default")


def test_dashboard_and_admin__a_member_sees_only_their_project(two_projects, client):
    client.force_login(member("dev", "team-b", "editor", ["development"]))
    overview = client.get("/?project=default").content.decode()  # not theirs: ignored
    assert '<option value="team-b" selected>Team B</option>' in overview
    assert 'value="default"' not in overview and "b-only" in overview
    assert [p.key for p in client.get("/admin/projects/project/").context["cl"].queryset] == ["team-b"]
    assert "b-only" in client.get("/admin/flags/flag/").content.decode()

    production = FlagState.objects.get(flag__project_id="team-b", flag__key="checkout", environment__key="production")
    refused = client.post("/flags/checkout/toggle", {"environment": "production", "enabled": "true",
                                                     "version": production.version}, follow=True)
    assert "limited to development" in refused.content.decode()
    production.refresh_from_db()
    assert not production.enabled
    targeting = client.post("/flags/checkout/targeting", {"environment": "production", "version": production.version,
                                                          "rules": [{"type": "user", "operator": "in", "value": ["u"]}]},
                            content_type="application/json")
    assert targeting.status_code == 403 and "limited to development" in targeting.json()["error"]["message"]
    development = FlagState.objects.get(flag__project_id="team-b", flag__key="checkout", environment__key="development")
    client.post("/flags/checkout/toggle", {"environment": "development", "enabled": "true",
                                           "version": development.version})
    development.refresh_from_db()
    assert development.enabled
    assert Flag.all_objects.get(project_id="default", key="checkout").states.filter(enabled=True).count() == 3


def test_admin__project_admin_grants_through_the_service(two_projects, client):
    client.force_login(member("boss-b", "team-b", "admin"))
    newbie = get_user_model().objects.create_user("newbie")
    response = client.post("/admin/projects/rolegrant/add/", {"role": "editor", "user": newbie.pk, "group": "",
                                                              "environments": '["staging"]'})
    assert response.status_code == 302
    grant = RoleGrant.objects.get(user=newbie)
    assert (grant.project_id, grant.role, grant.environments) == ("team-b", "editor", ["staging"])
    assert AuditEntry.objects.filter(action="role.granted", project="team-b", actor="boss-b").exists()
    bad = client.post("/admin/projects/rolegrant/add/", {"role": "editor", "user": newbie.pk, "group": "",
                                                         "environments": '["moon"]'})
    assert bad.status_code == 200 and "Unknown environment" in bad.content.decode()
