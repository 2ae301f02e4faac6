"""Dashboard actions need the REST call's model permission, set the state they showed (a stale page
gets a conflict, nothing written), and restores record their reason."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from audit.actor import Actor
from audit.models import AuditEntry
from flags import services
from flags.models import Flag, FlagState

pytestmark = pytest.mark.django_db
OTHER = Actor.system("other-operator")


def staff_with(username, *perms):
    user = get_user_model().objects.create_user(username, is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return user


def state(key="checkout", env="production"):
    return FlagState.objects.get(flag__key=key, environment__key=env)


def messages_of(response):
    return [m.message for m in response.context["messages"]] if response.context else []


@pytest.mark.parametrize("path, data", [
    ("/flags/checkout/toggle", {"environment": "production", "enabled": "false", "version": "1"}),
    ("/flags/checkout/kill", {"environment": "production", "reason": "viewer says so"}),
    ("/flags/checkout/restore", {"environment": "staging", "reason": "viewer says so"}),
])
def test_staff_with_only_view_flag__page_actions_403_and_nothing_written(client, page_flag, world, path, data):
    page_flag("checkout")
    services.flag_kill(actor=OTHER, flag=Flag.objects.get(key="checkout"), reason="r", environments=["staging"])
    client.force_login(staff_with("viewer", "flags.view_flag"))
    before = world.snapshot()

    response = client.post(path, data)

    assert response.status_code == 403
    assert world.snapshot() == before


def test_staff_with_change_flag__page_actions_allowed(client, page_flag):
    page_flag("checkout")
    client.force_login(staff_with("editor", "flags.view_flag", "flags.change_flag"))

    assert client.post("/flags/checkout/toggle", {"environment": "production", "enabled": "false"}).status_code == 302
    assert state().enabled is False
    client.post("/flags/checkout/kill", {"environment": "production", "reason": "errors"})
    assert state().killed is True


def test_viewer__sees_the_grid_without_action_forms_and_no_audit(client, page_flag):
    page_flag("checkout")
    client.force_login(staff_with("viewer", "flags.view_flag"))

    overview = client.get("/").content.decode()
    assert 'data-flag="checkout"' in overview and "/flags/checkout/toggle" not in overview
    detail = client.get("/flags/checkout").content.decode()
    assert "Recent changes" not in detail and "flag.created" not in detail
    assert client.get("/audit/").status_code == 403  # REST /api/audit needs audit.view_auditentry too


def test_staff_without_view_flag__pages_403(client, page_flag):
    page_flag("checkout")
    client.force_login(staff_with("bare"))
    for path in ("/", "/flags/checkout", "/analytics/", "/audit/"):
        assert client.get(path).status_code == 403, path


def test_overview_toggle_form__posts_the_intended_state_and_the_version_seen(staff_client, page_flag):
    page_flag("checkout")
    services.flag_toggle(actor=OTHER, flag=Flag.objects.get(key="checkout"), environment="staging", enabled=False)
    body = staff_client.get("/").content.decode()
    cells = {m.group(1): m.group(0) for m in re.finditer(r'<td class="cell" data-env="(\w+)".*?</td>', body, re.S)}
    assert 'name="enabled" value="false"' in cells["production"] and 'name="version" value="1"' in cells["production"]
    assert 'name="enabled" value="true"' in cells["staging"] and 'name="version" value="2"' in cells["staging"]


def test_stale_turn_off__conflict_message_and_nothing_written(staff_client, page_flag, world):
    """Operator A's page showed ON at version 1; B turned it off and on again meanwhile. A's
    "Turn off" must not undo B's change without A seeing it."""
    flag = page_flag("checkout")
    services.flag_toggle(actor=OTHER, flag=flag, environment="production", enabled=False)
    services.flag_toggle(actor=OTHER, flag=flag, environment="production", enabled=True)
    before = world.snapshot()

    response = staff_client.post("/flags/checkout/toggle", {"environment": "production", "enabled": "false",
                                                             "version": "1"}, follow=True)

    assert response.status_code == 200
    assert any("changed since you loaded the page" in m and "version 3" in m for m in messages_of(response))
    assert world.snapshot() == before and state().enabled is True


def test_stale_turn_on__already_on__conflict_and_nothing_written(staff_client, page_flag, world):
    """The finding: a stale page's "Turn on" turned a flag someone had just turned on back off."""
    page_flag("checkout", enabled=True)
    before = world.snapshot()

    response = staff_client.post("/flags/checkout/toggle", {"environment": "production", "enabled": "true"},
                                 follow=True)

    assert any("already on: nothing changed" in m for m in messages_of(response))
    assert world.snapshot() == before and state().enabled is True


def test_toggle_without_intended_state__refused(staff_client, page_flag, world):
    page_flag("checkout")
    before = world.snapshot()
    response = staff_client.post("/flags/checkout/toggle", {"environment": "production"}, follow=True)
    assert any("reload the page" in m for m in messages_of(response))
    assert world.snapshot() == before


def test_toggle_at_the_version_seen__sets_the_state(staff_client, page_flag):
    page_flag("checkout")
    response = staff_client.post("/flags/checkout/toggle", {"environment": "production", "enabled": "false",
                                                             "version": "1"}, follow=True)
    assert any("turned off" in m for m in messages_of(response))
    assert (state().enabled, state().version) == (False, 2)
    assert AuditEntry.objects.filter(action="flag.toggled", environment="production").count() == 1


def test_restore__records_the_reason(staff_client, page_flag):
    flag = page_flag("checkout")
    services.flag_kill(actor=OTHER, flag=flag, reason="outage", environments=["production"])
    body = staff_client.get("/").content.decode()
    assert re.search(r'action="/flags/checkout/restore"[^>]*>(?:(?!</form>).)*name="reason"', body, re.S)

    staff_client.post("/flags/checkout/restore", {"environment": "production", "reason": "fixed in 2.3.1"})

    assert state().killed is False
    assert AuditEntry.objects.get(action="flag.restored").reason == "fixed in 2.3.1"


def test_restore__reason_too_long__refused(staff_client, page_flag, world):
    flag = page_flag("checkout")
    services.flag_kill(actor=OTHER, flag=flag, reason="outage", environments=["production"])
    before = world.snapshot()
    response = staff_client.post("/flags/checkout/restore", {"environment": "production", "reason": "x" * 2001},
                                 follow=True)
    assert any("At most 2000 characters" in m for m in messages_of(response))
    assert world.snapshot() == before
