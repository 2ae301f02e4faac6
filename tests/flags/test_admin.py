"""The Django admin writes only through services: every edit leaves an audit entry."""

import html
import json
import re

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from flags.admin import state_versions
from flags.models import ApiKey, Flag, FlagState
from segments.models import Segment

pytestmark = pytest.mark.django_db


def change_url(flag):
    return reverse("admin:flags_flag_change", args=[flag.pk])


def change_form_data(flag, **state_overrides):
    """The change form as the browser posts it; state_overrides: {env key: {"enabled", "rules"}}."""
    data = {
        "name": flag.name, "description": flag.description, "tags": json.dumps(flag.tags), "kind": flag.kind,
        "variants": json.dumps(flag.variants), "seen_versions": state_versions(flag),
    }
    states = list(FlagState.objects.filter(flag=flag).select_related("environment").order_by("environment__sort_order"))
    data.update({"states-TOTAL_FORMS": len(states), "states-INITIAL_FORMS": len(states),
                 "states-MIN_NUM_FORMS": 0, "states-MAX_NUM_FORMS": 1000})
    for i, state in enumerate(states):
        override = state_overrides.get(state.environment.key, {})
        enabled = override.get("enabled", state.enabled)
        data[f"states-{i}-id"] = state.pk
        data[f"states-{i}-flag"] = flag.pk
        if enabled:
            data[f"states-{i}-enabled"] = "on"
        rules = override.get("rules", state.rules)
        data[f"states-{i}-rules"] = rules if isinstance(rules, str) else json.dumps(rules)
        data[f"states-{i}-off_variant"] = override.get("off_variant", state.off_variant)
    return data


def test_admin_edit_of_a_state__goes_through_the_service_and_is_audited(admin_client, flag):
    rules = [{"type": "geo", "operator": "in", "value": ["DE"]}]
    response = admin_client.post(change_url(flag), change_form_data(flag, production={"enabled": False, "rules": rules}))

    assert response.status_code == 302
    state = FlagState.objects.get(flag=flag, environment__key="production")
    assert (state.enabled, state.rules, state.version) == (False, rules, 2)
    entry = AuditEntry.objects.order_by("-id").first()
    assert (entry.action, entry.environment, entry.actor) == ("flag.updated", "production", "admin")
    assert entry.after["rules"] == rules


def test_admin_served_when_off__a_select_of_the_variants_saved_through_the_service(admin_client):
    from flags import services
    from flags.snapshot import get_snapshot
    from tests.api.conftest import SYSTEM

    mv = services.flag_create(actor=SYSTEM, key="mv", name="mv", kind="multivariate",
                              variants=[{"key": "a", "weight": 1, "value": 1}, {"key": "b", "weight": 0, "value": 2}])
    page = admin_client.get(change_url(mv)).content.decode()
    assert "Served when off" in page and '<option value="b">b</option>' in page

    response = admin_client.post(change_url(mv), change_form_data(mv, production={"off_variant": "b"}))

    assert response.status_code == 302
    assert FlagState.objects.get(flag=mv, environment__key="production").off_variant == "b"
    entry = AuditEntry.objects.order_by("-id").first()
    assert (entry.action, entry.environment, entry.after["offVariant"]) == ("flag.updated", "production", "b")
    result = get_snapshot("production").evaluate("mv", "u")
    assert (result.variant, result.value) == ("b", 2)


def test_admin_edit_of_flag_fields__audited(admin_client, flag):
    data = change_form_data(flag)
    data["name"] = "Shiny new checkout"
    response = admin_client.post(change_url(flag), data)
    assert response.status_code == 302
    assert Flag.objects.get(pk=flag.pk).name == "Shiny new checkout"
    assert AuditEntry.objects.filter(action="flag.updated", after__name="Shiny new checkout").exists()


def test_admin_bad_rule__shows_the_rule_path_and_writes_nothing(admin_client, flag, world):
    before = world.snapshot()
    bad = [{"type": "custom", "field": "plan", "operator": "equals", "value": "x"},
           {"type": "custom", "field": "plan", "operator": "equalz", "value": "x"}]

    response = admin_client.post(change_url(flag), change_form_data(flag, production={"rules": bad}))

    assert response.status_code == 200
    assert "rules[1].operator: Unknown operator &#x27;equalz&#x27;" in response.content.decode()
    assert world.snapshot() == before


def test_admin_rules_not_json__field_error_and_nothing_written(admin_client, flag, world):
    before = world.snapshot()
    response = admin_client.post(change_url(flag), change_form_data(flag, production={"rules": '[\n  {"a": 1},\n  {oops'}))
    assert response.status_code == 200
    assert ("Enter a valid JSON: expecting property name enclosed in double quotes (line 3, column 4)."
            in html.unescape(response.content.decode()))
    assert world.snapshot() == before


def test_admin_add_flag__created_through_service_with_states_everywhere(admin_client):
    response = admin_client.post(reverse("admin:flags_flag_add"), {
        "key": "from-admin", "name": "From admin", "description": "", "tags": '["ops"]', "kind": "boolean",
        "variants": "[]"})
    assert response.status_code == 302
    flag = Flag.objects.get(key="from-admin")
    assert flag.states.count() == 3
    assert AuditEntry.objects.filter(action="flag.created", target_key="from-admin").count() == 1


def test_admin_add_multivariate_without_variants__field_error(admin_client, world):
    before = world.snapshot()
    response = admin_client.post(reverse("admin:flags_flag_add"), {
        "key": "ab", "name": "AB", "description": "", "tags": "[]", "kind": "multivariate", "variants": "[]"})
    assert response.status_code == 200
    assert "A multivariate flag needs at least one variant." in response.content.decode()
    assert world.snapshot() == before


def action(admin_client, flag, name, **extra):
    return admin_client.post(reverse("admin:flags_flag_changelist"),
                             {"action": name, "_selected_action": [flag.pk], **extra})


def test_admin_kill_action__asks_for_a_reason_first(admin_client, flag):
    response = action(admin_client, flag, "kill", environment="production")

    assert response.status_code == 200
    assert 'name="reason"' in response.content.decode()
    assert not FlagState.objects.filter(flag=flag, killed=True).exists()


def test_admin_kill_action__with_reason__kills_and_audits(admin_client, flag):
    response = action(admin_client, flag, "kill", environment="production", confirm="yes", reason="payment outage")

    assert response.status_code == 302
    assert list(FlagState.objects.filter(flag=flag, killed=True).values_list("environment__key", flat=True)) == [
        "production"]
    entry = AuditEntry.objects.get(action="flag.killed")
    assert (entry.reason, entry.actor) == ("payment outage", "admin")


def test_admin_kill_action__blank_reason__asks_again(admin_client, flag):
    response = action(admin_client, flag, "kill", confirm="yes", reason="  ")
    assert response.status_code == 200 and "A reason is required." in response.content.decode()
    assert not AuditEntry.objects.filter(action="flag.killed").exists()


def test_admin_restore_and_turn_off_actions__audited(admin_client, flag):
    action(admin_client, flag, "kill", confirm="yes", reason="r")
    action(admin_client, flag, "restore", confirm="yes")
    action(admin_client, flag, "turn_off", environment="staging")
    assert not FlagState.objects.filter(flag=flag, killed=True).exists()
    assert FlagState.objects.get(flag=flag, environment__key="staging").enabled is False
    assert AuditEntry.objects.filter(action="flag.restored").count() == 3
    assert AuditEntry.objects.filter(action="flag.toggled", environment="staging").count() == 1


def test_admin_change_page__shows_audit_history(admin_client, flag):
    action(admin_client, flag, "turn_off", environment="staging")
    page = admin_client.get(change_url(flag)).content.decode()
    assert "flag.created" in page and "flag.toggled" in page


def test_admin_changelist__filters_by_status_environment_and_tag(admin_client, make_flag, actor):
    from flags import services

    make_flag("on-flag", tags=["ui"])
    off = make_flag("off-flag", tags=["ops"])
    services.flag_toggle(actor=actor, flag=off, environment="production", enabled=False)
    url = reverse("admin:flags_flag_changelist")

    page = admin_client.get(url, {"status": "disabled", "environment": "production"}).content.decode()
    assert "off-flag" in page and "on-flag" not in page
    page = admin_client.get(url, {"tag": "ui"}).content.decode()
    assert "on-flag" in page and "off-flag" not in page


def test_admin_delete_flag__through_service(admin_client, flag):
    response = admin_client.post(reverse("admin:flags_flag_delete", args=[flag.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Flag.objects.filter(pk=flag.pk).exists()
    assert AuditEntry.objects.filter(action="flag.deleted").count() == 1


def test_admin_audit_log__read_only(admin_client, flag):
    entry = AuditEntry.objects.first()
    assert admin_client.get(reverse("admin:audit_auditentry_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert admin_client.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_admin_api_key_add__shows_raw_key_once_and_stores_hash(admin_client):
    response = admin_client.post(reverse("admin:flags_apikey_add"),
                                 {"name": "web", "kind": "sdk", "environment": 3, "user": ""}, follow=True)
    api_key = ApiKey.objects.get(name="web")
    page = response.content.decode()
    assert f"<code>{api_key.prefix}" in page
    assert AuditEntry.objects.filter(action="apikey.created").count() == 1
    again = admin_client.get(reverse("admin:flags_apikey_change", args=[api_key.pk])).content.decode()
    assert "New key" not in again


def test_admin_segment_add__bad_conditions__path_message_nothing_written(admin_client, world):
    before = world.snapshot()
    response = admin_client.post(reverse("admin:segments_segment_add"), {
        "key": "premium", "name": "Premium", "description": "",
        "conditions": json.dumps([{"type": "custom", "field": "plan", "operator": "like", "value": "x"}])})
    assert response.status_code == 200
    assert "conditions[0].operator" in response.content.decode()
    assert world.snapshot() == before


def test_admin_segment_add__through_service(admin_client):
    response = admin_client.post(reverse("admin:segments_segment_add"), {
        "key": "premium", "name": "Premium", "description": "", "conditions": '{"plan": "premium"}'})
    assert response.status_code == 302
    assert Segment.objects.get(key="premium").conditions == {"plan": "premium"}
    assert AuditEntry.objects.filter(action="segment.created").count() == 1


# -- stale writes: the admin sets states and refuses a form loaded before another change ---------

def test_admin_turn_on__already_on__reported_and_nothing_written(admin_client, flag, world):
    before = world.snapshot()
    response = action(admin_client, flag, "turn_on", environment="production")
    assert response.status_code == 302
    page = admin_client.get(response["Location"]).content.decode()
    assert "already on: nothing changed" in page
    assert world.snapshot() == before


def test_admin_turn_off__needs_an_environment(admin_client, flag, world):
    before = world.snapshot()
    action(admin_client, flag, "turn_off")
    assert world.snapshot() == before


def test_admin_change_form_loaded_before_a_rest_change__refused_with_a_message(admin_client, flag, actor, world):
    """The finding: saving a form loaded before a REST change silently overwrote that change."""
    from flags import services

    stale = change_form_data(flag)  # what the operator's browser holds
    services.flag_update(actor=actor, flag=flag, environment="production",
                         data={"rules": [{"type": "geo", "operator": "in", "value": ["FR"]}]})
    before = world.snapshot()
    stale["name"] = "Renamed on a stale form"
    stale["states-0-rules"] = "[]"

    response = admin_client.post(change_url(flag), stale)

    assert response.status_code == 200
    assert "changed by someone else after you opened this form" in response.content.decode()
    assert world.snapshot() == before
    assert Flag.objects.get(pk=flag.pk).name == flag.name
    assert FlagState.objects.get(flag=flag, environment__key="production").rules[0]["value"] == ["FR"]


def test_admin_change_form_without_versions__refused(admin_client, flag, world):
    before = world.snapshot()
    data = change_form_data(flag)
    del data["seen_versions"]
    data["name"] = "x"
    assert admin_client.post(change_url(flag), data).status_code == 200
    assert world.snapshot() == before


def test_admin_change_form__carries_the_versions_it_was_loaded_at(admin_client, flag):
    page = admin_client.get(change_url(flag)).content.decode()
    assert f'name="seen_versions" value="{state_versions(flag)}"' in page


def test_admin_restore_action__asks_for_and_records_a_reason(admin_client, flag):
    action(admin_client, flag, "kill", environment="production", confirm="yes", reason="outage")
    response = action(admin_client, flag, "restore", environment="production")
    assert response.status_code == 200 and 'name="reason"' in response.content.decode()
    assert FlagState.objects.get(flag=flag, environment__key="production").killed is True

    action(admin_client, flag, "restore", environment="production", confirm="yes", reason="fixed upstream")

    assert FlagState.objects.get(flag=flag, environment__key="production").killed is False
    assert AuditEntry.objects.get(action="flag.restored").reason == "fixed upstream"


# -- who may change what in the admin --------------------------------------------------------------

def staff_with(django_user_model, username, *perms):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return user


def test_admin_archive_action__needs_delete_flag_as_rest_does(client, django_user_model, flag, world):
    client.force_login(staff_with(django_user_model, "changer", "flags.view_flag", "flags.change_flag"))
    before = world.snapshot()
    response = action(client, flag, "archive")
    assert response.status_code in (200, 302)
    assert world.snapshot() == before and Flag.objects.get(pk=flag.pk).archived is False


def test_admin_management_token_for_another_user__field_error_and_nothing_written(client, django_user_model, world):
    """The finding: a staff user with only add_apikey minted a token acting as a superuser."""
    root = django_user_model.objects.create_superuser("root", None, "pw")
    minter = staff_with(django_user_model, "minter", "flags.add_apikey")
    client.force_login(minter)
    keys, entries = ApiKey.objects.count(), AuditEntry.objects.count()

    response = client.post(reverse("admin:flags_apikey_add"),
                           {"name": "escalate", "kind": "management", "environment": "", "user": root.pk})

    assert response.status_code == 200
    assert "only for yourself" in response.content.decode()
    assert (ApiKey.objects.count(), AuditEntry.objects.count()) == (keys, entries)

    response = client.post(reverse("admin:flags_apikey_add"),
                           {"name": "mine", "kind": "management", "environment": "", "user": minter.pk})
    assert response.status_code == 302
    assert ApiKey.objects.get(name="mine").user == minter
    assert AuditEntry.objects.filter(action="apikey.created", actor="minter").count() == 1


def test_admin_superuser__may_mint_a_token_for_another_user(admin_client, user):
    response = admin_client.post(reverse("admin:flags_apikey_add"),
                                 {"name": "for-alice", "kind": "management", "environment": "", "user": user.pk})
    assert response.status_code == 302 and ApiKey.objects.get(name="for-alice").user == user


def test_admin_revoke_another_users_token__refused_own_allowed(client, django_user_model):
    from audit.actor import Actor
    from flags import services

    root = django_user_model.objects.create_superuser("root", None, "pw")
    staff = staff_with(django_user_model, "keeper", "flags.view_apikey", "flags.change_apikey")
    roots, _ = services.api_key_create(actor=Actor.system(), name="root-ci", kind="management", user=root)
    mine, _ = services.api_key_create(actor=Actor.system(), name="mine", kind="management", user=staff)
    client.force_login(staff)

    response = client.post(reverse("admin:flags_apikey_changelist"),
                           {"action": "revoke", "_selected_action": [roots.pk, mine.pk]}, follow=True)

    assert "only they or a superuser may revoke it" in response.content.decode()
    assert ApiKey.objects.get(pk=roots.pk).revoked_at is None
    assert ApiKey.objects.get(pk=mine.pk).revoked_at is not None
    assert not AuditEntry.objects.filter(action="apikey.revoked", target_key=roots.prefix).exists()


# -- privilege changes of users and groups: audited, and for superusers only ---------------------

def user_change_data(user, **overrides):
    data = {"username": user.username, "first_name": "", "last_name": "", "email": "",
            "is_active": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01", "initial-date_joined_1": "00:00:00"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_admin_make_superuser__audited_in_the_same_transaction(admin_client, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    response = admin_client.post(reverse("admin:auth_user_change", args=[bob.pk]),
                                 user_change_data(bob, is_staff="on", is_superuser="on"))

    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="user.privileges_changed", target_key="bob")
    assert (entry.actor, entry.target_type) == ("admin", "user")
    assert entry.before == {"is_staff": False, "is_superuser": False}
    assert entry.after == {"is_staff": True, "is_superuser": True}


def test_admin_grant_permission_and_group__audited(admin_client, django_user_model):
    from django.contrib.auth.models import Group, Permission

    bob = django_user_model.objects.create_user("bob")
    kill = Permission.objects.get(content_type__app_label="flags", codename="change_flag")
    group = Group.objects.create(name="operators")
    response = admin_client.post(reverse("admin:auth_user_change", args=[bob.pk]),
                                 user_change_data(bob, user_permissions=[kill.pk], groups=[group.pk]))
    assert response.status_code == 302
    perms = AuditEntry.objects.get(action="user.permissions_changed", target_key="bob")
    assert (perms.before, perms.after) == ({"user_permissions": []}, {"user_permissions": ["flags.change_flag"]})
    groups = AuditEntry.objects.get(action="user.groups_changed", target_key="bob")
    assert groups.after == {"groups": ["operators"]} and groups.actor == "admin"

    response = admin_client.post(reverse("admin:auth_group_change", args=[group.pk]),
                                 {"name": "operators", "permissions": [kill.pk]})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="group.permissions_changed", target_key="operators")
    assert entry.after == {"permissions": ["flags.change_flag"]} and entry.actor == "admin"


def test_admin_deactivate__audited(admin_client, django_user_model):
    bob = django_user_model.objects.create_user("bob", is_staff=True)
    admin_client.post(reverse("admin:auth_user_change", args=[bob.pk]), user_change_data(bob, is_active=None,
                                                                                          is_staff="on"))
    entry = AuditEntry.objects.get(action="user.privileges_changed", target_key="bob")
    assert (entry.before, entry.after) == ({"is_active": True}, {"is_active": False})


def test_non_superuser_with_change_user__cannot_grant_privileges_or_touch_a_superuser(client, django_user_model):
    root = django_user_model.objects.create_superuser("root", None, "pw")
    helper = staff_with(django_user_model, "helpdesk", "auth.view_user", "auth.change_user")
    client.force_login(helper)
    entries = AuditEntry.objects.count()

    response = client.post(reverse("admin:auth_user_change", args=[helper.pk]),
                           user_change_data(helper, is_staff="on", is_superuser="on"))

    assert response.status_code == 302  # saved the editable fields; the privilege fields are read-only
    helper.refresh_from_db()
    assert helper.is_superuser is False and AuditEntry.objects.count() == entries
    response = client.post(reverse("admin:auth_user_change", args=[root.pk]), user_change_data(root, is_active=None))
    assert response.status_code == 403  # view_user still shows it, read-only
    assert client.post(reverse("admin:auth_user_password_change", args=[root.pk]),
                       {"password1": "x-Takeover-123", "password2": "x-Takeover-123"}).status_code == 403
    root.refresh_from_db()
    assert root.check_password("pw") and root.is_active


def test_privileges_changed_outside_the_admin__audited_as_the_system(django_user_model):
    """createsuperuser, a shell, a script: no request, still an entry in the chain."""
    root = django_user_model.objects.create_superuser("root", None, None)
    created = AuditEntry.objects.get(action="user.created", target_key="root")
    assert (created.actor, created.after["is_superuser"]) == ("system", True)

    root.is_active = False
    root.save()
    root.save(update_fields=["last_login"])  # logins touch other fields only: nothing recorded

    entry = AuditEntry.objects.get(action="user.privileges_changed", target_key="root")
    assert (entry.before, entry.after, entry.actor) == ({"is_active": True}, {"is_active": False}, "system")


def test_admin_change_page__environment_sections_by_name_and_json_indented(admin_client, flag, actor):
    from flags import services

    rules = [{"type": "custom", "field": "locale", "operator": "starts_with", "value": ["en", "de"]}]
    services.flag_update(actor=actor, flag=flag, environment="production", data={"rules": rules})
    page = admin_client.get(change_url(flag)).content.decode()

    titles = re.findall(r'<h3><b>(.*?)</b>\s*<span class="inline_label">(.*?)\s*</span>', page)
    assert titles == [("Environment:", "Development"), ("Environment:", "Staging"), ("Environment:", "Production")]
    rows, text = re.search(r'<textarea name="states-2-rules" cols="80" rows="(\d+)"[^>]*>\n(.*?)</textarea>',
                           page, re.S).groups()
    text = html.unescape(text)
    assert json.loads(text) == rules and '\n    "operator": "starts_with"' in text  # indented, a key a line
    assert int(rows) == text.count("\n") + 2  # the box as tall as its content


def test_admin_tags_not_json__field_error_on_tags_and_nothing_written(admin_client, flag, world):
    before = world.snapshot()
    data = change_form_data(flag)
    data["tags"] = '["ui",'
    response = admin_client.post(change_url(flag), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["tags"] == [
        "Enter a valid JSON: expecting value (line 1, column 7)."]
    assert '["ui",' in response.content.decode().replace("&quot;", '"')  # what was typed, kept to fix
    assert world.snapshot() == before


def test_admin_changelist__a_short_status_column_per_environment(admin_client, make_flag, actor):
    from flags import services

    flag = make_flag("one-line")
    services.flag_kill(actor=actor, flag=flag, reason="r", environments=["production"])
    url = reverse("admin:flags_flag_changelist")
    page = admin_client.get(url).content.decode()
    headers = re.findall(r'<th scope="col" class="column-status_(\w+)">', page)
    assert headers == ["development", "staging", "production"]
    cells = re.findall(r'<td class="field-status_(\w+)"><span class="flag-chip (\w+)"[^>]*>(.*?)</span></td>', page)
    assert cells == [("development", "on", "on"), ("staging", "on", "on"), ("production", "killed", "KILLED")]
    assert "flags/admin.css" in page  # the chips' colours
    only = admin_client.get(url, {"environment": "staging"}).content.decode()  # the filter scopes the columns
    assert re.findall(r'<td class="field-status_(\w+)"><span class="flag-chip (\w+)"', only) == [("staging", "on")]


def changelist_keys(admin_client, **params):
    response = admin_client.get(reverse("admin:flags_flag_changelist"), params)
    assert response.status_code == 200
    return sorted(flag.key for flag in response.context["cl"].result_list)


def test_admin_changelist__queries_do_not_grow_with_the_number_of_flags(admin_client, make_flag, actor):
    """The status chips read prefetched states: no query per flag (nor per environment)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flags import services

    def count():
        admin_client.get(reverse("admin:flags_flag_changelist"))  # warm: session, content types
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(reverse("admin:flags_flag_changelist"))
        assert response.status_code == 200
        return len(queries), response.content.decode().count('class="flag-chip ')

    for i in range(3):
        make_flag(f"few-{i}", tags=[f"t{i}"])
    few, chips_few = count()
    for i in range(12):
        flag = make_flag(f"many-{i}", tags=[f"u{i}"], rules=[{"type": "user", "operator": "in", "value": ["u"]}])
        services.flag_kill(actor=actor, flag=flag, reason="r", environments=["staging"])
    many, chips_many = count()

    assert (chips_few, chips_many) == (3 * 3, 15 * 3)
    assert many == few, f"{few} queries for 3 flags, {many} for 15"


def test_admin_changelist__has_rules_filter__any_environment_or_the_chosen_one(admin_client, make_flag, actor):
    from flags import services

    make_flag("plain")
    targeted = make_flag("targeted")
    services.flag_update(actor=actor, flag=targeted, environment="staging",
                         data={"rules": [{"type": "geo", "operator": "in", "value": ["DE"]}]})

    assert changelist_keys(admin_client, has_rules="yes") == ["targeted"]
    assert changelist_keys(admin_client, has_rules="no") == ["plain"]
    assert changelist_keys(admin_client, has_rules="yes", environment="production") == []
    assert changelist_keys(admin_client, has_rules="no", environment="production") == ["plain", "targeted"]


def test_admin_changelist__stale_filter__not_evaluated_for_30_days(admin_client, make_flag):
    """Stale: older than 30 days and not evaluated since (the beat task's rule, computed live)."""
    from datetime import timedelta

    from django.utils import timezone

    from analytics.models import FlagActivity

    long_ago = timezone.now() - timedelta(days=45)
    for key in ("forgotten", "never-evaluated", "still-used"):
        make_flag(key)
    make_flag("brand-new")
    Flag.objects.exclude(key="brand-new").update(created_at=long_ago)  # test data: flags made long ago
    FlagActivity.objects.create(flag_key="forgotten", last_evaluated_at=long_ago)
    FlagActivity.objects.create(flag_key="still-used", last_evaluated_at=timezone.now() - timedelta(days=2))

    assert changelist_keys(admin_client, stale="yes") == ["forgotten", "never-evaluated"]
    assert changelist_keys(admin_client, stale="no") == ["brand-new", "still-used"]
    faceted = admin_client.get(reverse("admin:flags_flag_changelist"), {"_facets": "True"}).content.decode()
    assert re.search(r"Stale \(not evaluated for 30 days\)\s*\(2\)", faceted), "facet counts"
    assert re.search(r"With rules\s*\(0\)", faceted)


def test_admin_unarchive_action__through_the_service(admin_client, make_flag, actor):
    from flags import services

    gone = make_flag("gone")
    services.flag_archive(actor=actor, flag=gone)
    response = action(admin_client, gone, "unarchive")
    assert response.status_code == 302
    assert Flag.objects.get(key="gone").archived is False
    assert AuditEntry.objects.filter(action="flag.unarchived", target_key="gone", actor="admin").count() == 1


def test_admin_tag_actions__add_and_remove_in_bulk__audited(admin_client, make_flag):
    one, two = make_flag("one", tags=["ui"]), make_flag("two")
    url = reverse("admin:flags_flag_changelist")

    response = admin_client.post(url, {"action": "add_tag", "_selected_action": [one.pk, two.pk], "tag": "q3"},
                                 follow=True)
    assert [Flag.objects.get(key=k).tags for k in ("one", "two")] == [["ui", "q3"], ["q3"]]
    assert any("Added tag 'q3' to 2 flag(s)" in str(m) for m in response.context["messages"])
    admin_client.post(url, {"action": "remove_tag", "_selected_action": [one.pk, two.pk], "tag": "ui"})
    assert [Flag.objects.get(key=k).tags for k in ("one", "two")] == [["q3"], ["q3"]]
    entries = AuditEntry.objects.filter(action="flag.updated").order_by("id")
    assert [(e.target_key, e.before["tags"], e.after["tags"], e.actor) for e in entries] == [
        ("one", ["ui"], ["ui", "q3"], "admin"), ("two", [], ["q3"], "admin"), ("one", ["ui", "q3"], ["q3"], "admin")]


@pytest.mark.parametrize("tag, message", [("", "Type the tag"), ("  ", "Type the tag"),
                                          ("x" * 65, "at most 64 characters")])
def test_admin_tag_actions__no_or_bad_tag__refused_nothing_written(admin_client, make_flag, world, tag, message):
    flag = make_flag("one", tags=["ui"])
    before = world.snapshot()
    response = admin_client.post(reverse("admin:flags_flag_changelist"),
                                 {"action": "add_tag", "_selected_action": [flag.pk], "tag": tag}, follow=True)
    shown = [str(m) for m in response.context["messages"]] if response.context else []
    assert any(message in m for m in shown), shown
    assert world.snapshot() == before and Flag.objects.get(pk=flag.pk).tags == ["ui"]
