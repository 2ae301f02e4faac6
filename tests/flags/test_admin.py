"""The Django admin writes only through services: every edit leaves an audit entry."""

import json

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from flags.models import ApiKey, Flag, FlagState
from segments.models import Segment

pytestmark = pytest.mark.django_db


def change_url(flag):
    return reverse("admin:flags_flag_change", args=[flag.pk])


def change_form_data(flag, **state_overrides):
    """The change form as the browser posts it; state_overrides: {env key: {"enabled", "rules"}}."""
    data = {
        "name": flag.name, "description": flag.description, "tags": json.dumps(flag.tags), "kind": flag.kind,
        "variants": json.dumps(flag.variants),
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
    response = admin_client.post(change_url(flag), change_form_data(flag, production={"rules": "[{oops"}))
    assert response.status_code == 200
    assert "Enter a valid JSON." in response.content.decode()
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


def test_admin_restore_and_toggle_actions__audited(admin_client, flag):
    action(admin_client, flag, "kill", confirm="yes", reason="r")
    action(admin_client, flag, "restore")
    action(admin_client, flag, "toggle", environment="staging")
    assert not FlagState.objects.filter(flag=flag, killed=True).exists()
    assert FlagState.objects.get(flag=flag, environment__key="staging").enabled is False
    assert AuditEntry.objects.filter(action="flag.restored").count() == 3
    assert AuditEntry.objects.filter(action="flag.toggled", environment="staging").count() == 1


def test_admin_change_page__shows_audit_history(admin_client, flag):
    action(admin_client, flag, "toggle", environment="staging")
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
