"""The dashboard pages through Django's test client: access, rendering, and actions via services."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import counters, services as analytics_services
from audit.models import AuditEntry
from flags.models import Flag, FlagState
from flags.snapshot import get_snapshot

pytestmark = pytest.mark.django_db
PAGES = ["/", "/flags/checkout", "/audit/", "/analytics/"]


@pytest.mark.parametrize("path", PAGES)
def test_anonymous__redirected_to_login(client, page_flag, path):
    page_flag("checkout")
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("path", PAGES)
def test_non_staff__forbidden(client, member, page_flag, path):
    page_flag("checkout")
    client.force_login(member)
    assert client.get(path).status_code == 403


def test_non_staff__cannot_toggle(client, member, page_flag):
    page_flag("checkout")
    client.force_login(member)
    assert client.post("/flags/checkout/toggle", {"environment": "production"}).status_code == 403
    assert FlagState.objects.get(flag__key="checkout", environment__key="production").enabled is True


def test_overview__grid_of_flags_by_environment_with_search_and_tags(staff_client, page_flag):
    page_flag("new-checkout", tags=["payments"])
    page_flag("dark-mode", enabled=False, tags=["ui"])
    body = staff_client.get("/").content.decode()
    assert body.count('data-status="on"') == 3 and body.count('data-status="off"') == 3
    assert "dark-mode" in body and "new-checkout" in body
    tagged = staff_client.get("/?tag=ui").content.decode()
    assert 'data-flag="dark-mode"' in tagged and 'data-flag="new-checkout"' not in tagged
    searched = staff_client.get("/?q=checkout").content.decode()
    assert 'data-flag="new-checkout"' in searched and 'data-flag="dark-mode"' not in searched


def test_toggle__through_the_service_with_audit_and_new_snapshot(staff_client, page_flag):
    page_flag("checkout")
    response = staff_client.post("/flags/checkout/toggle", {"environment": "staging", "enabled": "false",
                                                             "next": "/?q=check"})
    assert response.status_code == 302 and response["Location"] == "/?q=check"
    assert FlagState.objects.get(flag__key="checkout", environment__key="staging").enabled is False
    entry = AuditEntry.objects.get(action="flag.toggled")
    assert entry.actor == "ops" and entry.environment == "staging"
    assert get_snapshot("staging").evaluate("checkout", "u1").enabled is False


def test_kill__needs_a_reason__then_kills_one_environment(staff_client, page_flag):
    page_flag("checkout")
    response = staff_client.post("/flags/checkout/kill", {"environment": "production", "reason": ""}, follow=True)
    assert response.status_code == 200 and "reason" in response.content.decode().lower()
    assert not FlagState.objects.filter(killed=True).exists()
    staff_client.post("/flags/checkout/kill", {"environment": "production", "reason": "checkout errors"})
    killed = FlagState.objects.get(killed=True)
    assert killed.environment.key == "production" and killed.killed_reason == "checkout errors"
    assert AuditEntry.objects.get(action="flag.killed").reason == "checkout errors"
    staff_client.post("/flags/checkout/restore", {"environment": "production"})
    assert not FlagState.objects.filter(killed=True).exists()


def test_actions__unknown_flag_404_offsite_next_ignored(staff_client, page_flag):
    page_flag("checkout")
    assert staff_client.post("/flags/nope/toggle", {"environment": "production"}).status_code == 404
    response = staff_client.post("/flags/checkout/toggle", {"environment": "moon", "enabled": "false",
                                                             "next": "https://evil.example/"})
    assert response["Location"] == "/"
    assert staff_client.get("/flags/nope").status_code == 404


def test_detail__sentence_stale_badge_series_and_diffs(staff_client, page_flag):
    flag = page_flag("checkout", description="The new checkout flow", rules=[
        {"type": "geo", "operator": "in", "value": ["US", "CA", "UK"]},
        {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"},
        {"type": "percentage", "operator": "less_than", "value": 30}])
    Flag.objects.filter(pk=flag.pk).update(created_at=timezone.now() - timedelta(days=60))
    analytics_services.flags_mark_stale()
    staff_client.post("/flags/checkout/toggle", {"environment": "staging", "enabled": "false"})
    snapshot = get_snapshot("production")
    for i in range(40):
        counters.record(snapshot.evaluate("checkout", f"u{i}", {"country": "US", "plan": "premium"}), f"u{i}")
    counters.flush()

    body = staff_client.get("/flags/checkout").content.decode()

    assert "The new checkout flow" in body
    assert "When country is US, CA or UK and plan is premium, then 30% of users." in body
    assert 'class="badge stale"' not in body  # evaluated since the mark: no longer stale
    assert re.search(r'id="total-evaluations">40<', body)
    assert "flag.toggled" in body and 'class="before">True<' in body and 'class="after">False<' in body


def test_detail__stale_badge_when_marked(staff_client, page_flag):
    flag = page_flag("old-flag")
    Flag.objects.filter(pk=flag.pk).update(created_at=timezone.now() - timedelta(days=60))
    analytics_services.flags_mark_stale()
    assert 'class="badge stale"' in staff_client.get("/flags/old-flag").content.decode()
    assert 'class="badge stale"' in staff_client.get("/").content.decode()


def test_audit_log__filters(staff_client, page_flag):
    page_flag("checkout")
    page_flag("search")
    staff_client.post("/flags/checkout/kill", {"environment": "production", "reason": "boom"})
    body = staff_client.get("/audit/?action=flag.killed").content.decode()
    assert body.count('data-action="flag.killed"') == 1 and "Reason: boom" in body
    assert 'data-action="flag.created"' not in body
    by_target = staff_client.get("/audit/?target=search").content.decode()
    assert by_target.count('data-action="flag.created"') == 1


def test_analytics_overview__metrics_and_top_flags(staff_client, page_flag):
    page_flag("checkout")
    snapshot = get_snapshot("production")
    for i in range(7):
        counters.record(snapshot.evaluate("checkout", f"u{i}"), f"u{i}")
    counters.flush()
    body = staff_client.get("/analytics/").content.decode()
    assert re.search(r'id="evaluations-24h">7<', body)
    assert "<code>checkout</code></a> <span>7</span>" in body


def test_detail__multivariate_flag_shows_its_variants_weights_and_values(staff_client, page_flag):
    page_flag("pricing", kind="multivariate", variants=[
        {"key": "control", "weight": 2, "value": {"price": 9.99}},
        {"key": "treatment", "weight": 1, "value": {"price": 8.99}}])
    body = staff_client.get("/flags/pricing").content.decode()

    assert "On for everyone, serving control (66.7%) or treatment (33.3%)." in body
    assert "On for everyone." not in body
    rows = re.findall(r"<tr><th scope=\"row\"><code>(\w+)</code></th><td>(\d+)</td><td>([\d.]+%)</td>"
                      r"<td><code>(.*?)</code></td></tr>", body)
    assert rows == [("control", "2", "66.7%", "{&quot;price&quot;: 9.99}"),
                    ("treatment", "1", "33.3%", "{&quot;price&quot;: 8.99}")]
    assert 'id="chart-variants"' in body


def test_detail__boolean_flag_has_no_variant_card(staff_client, page_flag):
    page_flag("plain")
    body = staff_client.get("/flags/plain").content.decode()
    assert "On for everyone." in body
    assert 'id="chart-variants"' not in body and "Variant" not in body


def audit_groups(body):
    """[(action, data-count, "open" or "")] of the audit page's entries, top to bottom."""
    return re.findall(r'<li class="entry" data-action="([\w.]+)" data-count="(\d+)">.*?(?:<details (open)?|</li>)',
                      body, re.S)


def test_audit_log__a_kill_in_every_environment_is_one_collapsed_entry(staff_client, page_flag):
    page_flag("checkout")
    staff_client.post("/flags/checkout/kill", {"environment": "", "reason": "errors spiking"})
    body = staff_client.get("/audit/?action=flag.killed").content.decode()

    assert audit_groups(body) == [("flag.killed", "3", "")]  # one entry, its 3 x 4 changed fields collapsed
    assert body.count("Reason: errors spiking") == 1
    assert re.findall(r'<span class="tag">(\w+)</span>', body) == ["development", "staging", "production"]
    assert "<summary>12 changes in 3 environments</summary>" in body
    assert ('<td>production</td><th scope="row"><code>killedBy</code></th><td class="before">—</td>'
            '<td class="after">ops</td>') in body  # an empty value shows as a dash, not as nothing
    assert AuditEntry.objects.filter(action="flag.killed").count() == 3  # the log itself is untouched


def test_audit_log__only_changed_fields_no_version_noise(staff_client, page_flag):
    page_flag("checkout")
    staff_client.post("/flags/checkout/toggle", {"environment": "staging", "enabled": "false"})
    body = staff_client.get("/audit/?action=flag.toggled").content.decode()

    assert audit_groups(body) == [("flag.toggled", "1", "open")]
    fields = re.findall(r'<th scope="row"><code>([\w.]+)</code></th><td class="before">(.*?)</td><td class="after">(.*?)<',
                        body)
    assert fields == [("enabled", "True", "False")]  # not version, updatedAt


def test_audit_log__created_flag_is_a_field_list(staff_client, page_flag):
    page_flag("checkout", tags=["payments"])
    body = staff_client.get("/audit/?action=flag.created").content.decode()

    values = dict(re.findall(r'<th scope="row"><code>([\w.]+)</code></th><td>(.*?)</td>', body))
    assert values["name"] == "Checkout" and values["tags"] == "[&quot;payments&quot;]"
    assert values["states.production.enabled"] == "True" and values["states.production.rules"] == "[]"
    assert not any(k.endswith(("version", "updatedAt", "createdAt")) for k in values)
    assert "&quot;archived&quot;" not in body  # no longer one JSON blob


def test_audit_log__paginated_by_groups_filters_kept(staff_client, page_flag):
    for i in range(53):
        page_flag(f"flag-{i:02}")
    first = staff_client.get("/audit/?action=flag.created").content.decode()
    assert len(audit_groups(first)) == 50 and "Page 1 of 2" in first and "53 actions" in first
    assert 'href="?action=flag.created&page=2"' in first
    second = staff_client.get("/audit/?action=flag.created&page=2").content.decode()
    assert len(audit_groups(second)) == 3 and "flag-00" in second and "flag-52" not in second


def test_favicon__served_at_the_root_and_linked_from_every_page(client, staff_client, page_flag):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content)[:4] == b"\0\0\1\0"  # an icon file
    page_flag("checkout")
    for path in PAGES:
        assert '<link rel="icon" href="/favicon.ico"' in staff_client.get(path).content.decode(), path


def test_api_docs_with_trailing_slash__redirects_to_the_docs(client):
    response = client.get("/api/docs/")
    assert (response.status_code, response["Location"]) == (302, "/api/docs")
    assert client.get("/api/docs/?x=1")["Location"] == "/api/docs?x=1"
    assert client.get(response["Location"]).status_code == 200
