"""SSO login through Django's test client against the real provider (tests/sso/conftest.py): the
redirect flow, what a login writes (users, "oidc:" groups, role grants, audit) and what it refuses."""

import pytest
from django.contrib.auth import SESSION_KEY, authenticate, get_user_model
from django.contrib.auth.models import Group
from django.test import RequestFactory

from audit.models import AuditEntry
from projects.models import RoleGrant
from tests.sso.conftest import sso_login

User = get_user_model()


def grants_of(user):
    """The (project, role, environments) a user holds through groups: what projects/policy.py reads."""
    return sorted((g.project_id, g.role, g.environments) for g in RoleGrant.objects.filter(group__user=user))


def logged_in_as(client):
    user_id = client.session.get(SESSION_KEY)
    return User.objects.get(pk=user_id).username if user_id else None


def test_first_login__user_created_with_the_roles_of_their_groups(client, sso_settings, oidc_provider, projects):
    oidc_provider.set_user("alice@example.com", groups=["payments-devs", "not-mapped"], name="Alice")

    response = sso_login(client, oidc_provider, "alice@example.com", next_url="/flags/new/")

    assert response.status_code == 302 and response["Location"] == "/flags/new/"
    assert logged_in_as(client) == "alice@example.com"
    alice = User.objects.get(username="alice@example.com")
    assert alice.email == "alice@example.com" and not alice.has_usable_password()
    assert not alice.is_staff and not alice.is_superuser  # no staff mapping configured: left as it is
    assert sorted(alice.groups.values_list("name", flat=True)) == ["oidc:payments-devs"]
    assert grants_of(alice) == [("payments", "editor", ["development", "staging"])]
    # every mapped claim group has its group and grants, members or not; unmapped ones get none
    assert sorted(Group.objects.values_list("name", flat=True)) == [
        "oidc:payments-devs", "oidc:payments-leads", "oidc:search-team"]
    assert sorted((g.group.name, g.project_id, g.role, g.environments) for g in RoleGrant.objects.all()) == [
        ("oidc:payments-devs", "payments", "editor", ["development", "staging"]),
        ("oidc:payments-leads", "payments", "admin", []),
        ("oidc:payments-leads", "search", "viewer", []),
        ("oidc:search-team", "search", "editor", []),
    ]
    created = AuditEntry.objects.get(action="sso.user_created")
    assert created.actor == "sso" and created.after["groups"] == ["oidc:payments-devs"]
    assert AuditEntry.objects.filter(action="sso.group_synced").count() == 4  # one per group and project


def test_removed_from_a_group_at_the_provider__loses_its_role_at_next_login(client, sso_settings, oidc_provider,
                                                                             projects):
    oidc_provider.set_user("bob@example.com", groups=["payments-leads", "search-team"])
    sso_login(client, oidc_provider, "bob@example.com")
    bob = User.objects.get(username="bob@example.com")
    hand_made = Group.objects.create(name="release-managers")  # an admin's own group: never touched by SSO
    bob.groups.add(hand_made)
    assert ("payments", "admin", []) in grants_of(bob)
    client.logout()

    oidc_provider.set_user("bob@example.com", groups=["search-team"])
    sso_login(client, oidc_provider, "bob@example.com")

    assert logged_in_as(client) == "bob@example.com"
    assert sorted(bob.groups.values_list("name", flat=True)) == ["oidc:search-team", "release-managers"]
    assert grants_of(bob) == [("search", "editor", [])]
    synced = AuditEntry.objects.get(action="sso.user_synced", target_key="bob@example.com")
    assert synced.before["groups"] == ["oidc:payments-leads", "oidc:search-team"]
    assert synced.after["groups"] == ["oidc:search-team"]
    # the groups' own grants did not change, so no second group entry
    assert AuditEntry.objects.filter(action="sso.group_synced").count() == 4


def test_mapping_changed__next_login_updates_the_groups_grants(client, sso_settings, oidc_provider, projects):
    oidc_provider.set_user("carol@example.com", groups=["payments-devs"])
    sso_login(client, oidc_provider, "carol@example.com")
    sso_settings.FLAGS_OIDC_GROUP_ROLES = {
        "payments-devs": [{"project": "payments", "role": "editor", "environments": ["development"]}],
        "search-team": [{"project": "search", "role": "viewer"}],
    }  # payments-leads is no longer mapped
    client.logout()

    sso_login(client, oidc_provider, "carol@example.com")

    assert sorted((g.group.name, g.project_id, g.role, g.environments) for g in RoleGrant.objects.all()) == [
        ("oidc:payments-devs", "payments", "editor", ["development"]),
        ("oidc:search-team", "search", "viewer", []),
    ]
    changed = AuditEntry.objects.filter(action="sso.group_synced").order_by("id")[4:]
    assert sorted((e.target_key, e.project) for e in changed) == [
        ("oidc:payments-devs", "payments"), ("oidc:payments-leads", "payments"), ("oidc:payments-leads", "search"),
        ("oidc:search-team", "search")]


def test_staff_and_superuser_groups__follow_the_token(client, sso_settings, oidc_provider, projects):
    sso_settings.FLAGS_OIDC_STAFF_GROUPS = ["flag-ops"]
    sso_settings.FLAGS_OIDC_SUPERUSER_GROUPS = ["flag-admins"]
    oidc_provider.set_user("dana@example.com", groups=["flag-admins"])
    sso_login(client, oidc_provider, "dana@example.com")
    dana = User.objects.get(username="dana@example.com")
    assert dana.is_staff and dana.is_superuser
    assert client.get("/").status_code == 200  # the dashboard
    client.logout()

    oidc_provider.set_user("dana@example.com", groups=["flag-ops"])
    sso_login(client, oidc_provider, "dana@example.com")
    dana.refresh_from_db()
    assert dana.is_staff and not dana.is_superuser

    oidc_provider.set_user("dana@example.com", groups=[])
    client.logout()
    sso_login(client, oidc_provider, "dana@example.com")
    dana.refresh_from_db()
    assert not dana.is_staff and not dana.is_superuser


def test_existing_local_user__same_username__is_the_same_account(client, sso_settings, oidc_provider, projects):
    """A user made before SSO keeps their account (and password) and gains their groups' roles."""
    erin = User.objects.create_user("erin@example.com", password="pw-local-123", is_staff=True)
    oidc_provider.set_user("erin@example.com", groups=["search-team"])

    sso_login(client, oidc_provider, "erin@example.com")

    erin.refresh_from_db()
    assert logged_in_as(client) == "erin@example.com" and erin.is_staff and erin.has_usable_password()
    assert grants_of(erin) == [("search", "editor", [])]


def test_deactivated_user__sso_does_not_let_them_in(client, sso_settings, oidc_provider, projects):
    User.objects.create_user("frank@example.com", is_active=False)
    oidc_provider.set_user("frank@example.com", groups=["search-team"])

    response = sso_login(client, oidc_provider, "frank@example.com")

    assert response["Location"] == "/admin/login/?sso=failed" and logged_in_as(client) is None
    assert not User.objects.get(username="frank@example.com").is_active


def test_token_without_the_username_claim__refused_and_nothing_written(client, sso_settings, oidc_provider,
                                                                        projects):
    sso_settings.FLAGS_OIDC_USERNAME_CLAIM = "preferred_username"
    oidc_provider.set_user("gina@example.com", groups=["search-team"])

    response = sso_login(client, oidc_provider, "gina@example.com")

    assert response["Location"] == "/admin/login/?sso=failed" and logged_in_as(client) is None
    assert not User.objects.exists() and not Group.objects.exists()
    page = client.get(response["Location"])
    assert b"Single sign-on did not complete" in page.content


def test_nested_groups_claim_and_username_claim(client, sso_settings, oidc_provider, projects):
    sso_settings.FLAGS_OIDC_USERNAME_CLAIM = "preferred_username"
    sso_settings.FLAGS_OIDC_GROUPS_CLAIM = "realm_access.roles"
    oidc_provider.set_user("sub-123", preferred_username="hana", realm_access={"roles": ["search-team"]})

    sso_login(client, oidc_provider, "sub-123")

    assert logged_in_as(client) == "hana"
    assert grants_of(User.objects.get(username="hana")) == [("search", "editor", [])]


def test_grant_for_a_missing_project__skipped_others_applied(client, sso_settings, oidc_provider, projects):
    sso_settings.FLAGS_OIDC_GROUP_ROLES = {"search-team": [{"project": "search", "role": "editor"},
                                                           {"project": "nope", "role": "viewer"}]}
    oidc_provider.set_user("ida@example.com", groups=["search-team"])

    sso_login(client, oidc_provider, "ida@example.com")

    assert grants_of(User.objects.get(username="ida@example.com")) == [("search", "editor", [])]


# ---- local passwords switched off ---------------------------------------------------------------

def test_password_login_off__form_gone_post_refused_sso_still_works(client, sso_settings, oidc_provider, projects):
    sso_settings.FLAGS_PASSWORD_LOGIN = False
    User.objects.create_user("ops", password="pw-ops-123", is_staff=True, is_superuser=True)

    page = client.get("/admin/login/?next=/")
    assert page.status_code == 200
    assert b'id="sso-login"' in page.content and b'name="password"' not in page.content
    refused = client.post("/admin/login/?next=/", {"username": "ops", "password": "pw-ops-123", "next": "/"})
    assert refused.status_code == 403 and b"Password sign-in is switched off" in refused.content
    assert logged_in_as(client) is None
    assert authenticate(RequestFactory().post("/"), username="ops", password="pw-ops-123") is None

    oidc_provider.set_user("ops", groups=[])
    assert sso_login(client, oidc_provider, "ops").status_code == 302
    assert logged_in_as(client) == "ops"


def test_password_login_on__both_offered(client, sso_settings, oidc_provider):
    page = client.get("/admin/login/?next=/")
    assert b'id="sso-login"' in page.content and b'name="password"' in page.content
    assert b'href="/oidc/authenticate/?next=/"' in page.content


# ---- SSO off (the default) and an unreachable provider ---------------------------------------

@pytest.mark.django_db
def test_sso_off__login_page_unchanged_and_oidc_paths_404(client):
    page = client.get("/admin/login/?next=/")
    assert page.status_code == 200 and b'name="password"' in page.content and b"sso-login" not in page.content
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404


@pytest.mark.django_db
def test_provider_unreachable__login_page_says_so_503(client, sso_settings):
    from tests.servers import free_port

    sso_settings.FLAGS_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    response = client.get("/oidc/authenticate/?next=/")

    assert response.status_code == 503 and b"The sign-in provider cannot be reached" in response.content


@pytest.mark.django_db
def test_callback_with_a_state_never_issued__refused_not_500(client, sso_settings):
    client.get("/oidc/authenticate/")  # a real state exists in the session, but not this one
    response = client.get("/oidc/callback/?code=forged&state=forged")
    assert response.status_code == 302 and response["Location"] == "/admin/login/?sso=failed"
    assert logged_in_as(client) is None
