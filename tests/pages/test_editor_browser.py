"""The targeting editor and "evaluate as" in a real browser (Debian's Chromium through Playwright,
the fixtures of test_browser.py): rules built only with the editor's controls and saved, an invalid
value refused at its row, the raw-JSON toggle's round trip, and one user's answer explained."""

import json
import os
import time
import urllib.request

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from analytics.counters import Recorder
from audit.models import AuditEntry
from flags.management.commands.load_demo_data import FLAGS as DEMO_FLAGS
from flags.models import Flag, FlagState
from segments.services import segment_create
from tests.api.conftest import make_key
from tests.pages.conftest import SYSTEM
from tests.pages.test_browser import browser, log_in, shot, site, staff_user  # noqa: F401 (fixtures)
from tests.servers import start_web

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.needs("chromium")]


def logged_in_page(browser, site):  # noqa: F811
    """A logged-in page that fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    log_in(page, site)
    page.site = site
    yield page
    context.close()
    assert errors == []


@pytest.fixture
def editor_page(browser, site, staff_user):  # noqa: F811
    yield from logged_in_page(browser, site)


@pytest.fixture
def flushing_site(transactional_db):
    """The web server flushing its analytics (and sampled contexts, to the cache) every 0.3 s."""
    server = start_web(FLAGS_WS_PING_SECONDS="5", FLAGS_ANALYTICS_AUTOFLUSH="true",
                       FLAGS_ANALYTICS_FLUSH_SECONDS="0.3")
    yield server
    server.stop()


@pytest.fixture
def flushing_page(browser, flushing_site, staff_user):  # noqa: F811
    yield from logged_in_page(browser, flushing_site)


def open_flag(page, key):
    page.goto(f"{page.site.http_url}/flags/{key}")
    expect(page.get_by_label("Environment to edit")).to_be_visible()


def panel(page, env="production"):
    return page.locator(f'.env-targeting[data-env="{env}"]')


def label(page, text):
    return panel(page).get_by_label(text, exact=True)


def test_build_rules_from_nothing_with_the_controls__saved_as_the_engines_json(editor_page, page_flag):
    page = editor_page
    page_flag("checkout")
    segment_create(actor=SYSTEM, key="beta", name="Beta", conditions={"beta": True})
    open_flag(page, "checkout")
    prod = panel(page)

    # (country in US/CA and plan == premium) or segment beta ...
    prod.get_by_role("button", name="Add group", exact=True).click()
    label(page, "Rule 1 Type").select_option("any")
    prod.get_by_role("button", name="Add group to Rule 1", exact=True).click()
    prod.get_by_role("button", name="Add rule to Rule 1.1", exact=True).click()
    label(page, "Rule 1.1.1 Type").select_option("geo")
    label(page, "Rule 1.1.1 Search countries").fill("united")
    label(page, "Rule 1.1.1 Countries").select_option(["US"])
    label(page, "Rule 1.1.1 Search countries").fill("")
    label(page, "Rule 1.1.1 Countries").select_option(["US", "CA"])
    prod.get_by_role("button", name="Add rule to Rule 1.1", exact=True).click()
    label(page, "Rule 1.1.2 Attribute").fill("plan")
    label(page, "Rule 1.1.2 Value").fill("premium")
    prod.get_by_role("button", name="Add rule to Rule 1", exact=True).click()
    label(page, "Rule 1.2 Type").select_option("segment")
    label(page, "Rule 1.2 Segments").select_option(["beta"])
    # ... then 30% of them
    prod.get_by_role("button", name="Add rule", exact=True).click()
    label(page, "Rule 2 Type").select_option("percentage")
    label(page, "Rule 2 Percent of users").fill("30")

    expect(prod.locator(".rule-summary")).to_have_text(
        "When ((country is US or CA and plan is premium) or user is in segment beta), then 30% of users.")
    expect(prod.locator(".json-diff .add").first).to_be_visible()
    shot(page, "editor")
    sdk_key = make_key("sdk", environment="production")
    before = rest_evaluate(page.site, sdk_key, "checkout", "probe")["version"]
    prod.get_by_role("button", name="Save targeting in Production").click()
    expect(prod.locator(".save-status")).to_have_text("Saved: Production is now at version 2.")

    expected = [
        {"type": "any", "rules": [
            {"type": "all", "rules": [{"type": "geo", "operator": "in", "value": ["US", "CA"]},
                                      {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}]},
            {"type": "segment", "operator": "in", "value": ["beta"]}]},
        {"type": "percentage", "operator": "less_than", "value": 30}]
    assert FlagState.objects.get(flag__key="checkout", environment__key="production").rules == expected
    assert FlagState.objects.get(flag__key="checkout", environment__key="staging").rules == []
    assert AuditEntry.objects.filter(action="flag.updated", target_key="checkout", environment="production").count() == 1
    # REST, as an SDK sees it: outside the targeting off; inside it, about 30% of users on
    wait_for_version(page.site, sdk_key, "checkout", before)
    assert rest_evaluate(page.site, sdk_key, "checkout", "u1", {"country": "DE", "plan": "premium"})["reason"] == \
        "RULE_MISMATCH"
    for context in ({"country": "CA", "plan": "premium"}, {"beta": True}):
        on = sum(rest_evaluate(page.site, sdk_key, "checkout", f"user-{n}", context)["enabled"] for n in range(200))
        assert 40 <= on <= 80, (context, on)  # about 30% of 200
    expect(prod.locator(".json-diff")).to_have_count(0)  # nothing pending after the save


def test_invalid_value__error_at_its_row__nothing_saved(editor_page, page_flag):
    page = editor_page
    page_flag("checkout")
    open_flag(page, "checkout")
    prod = panel(page)
    prod.get_by_role("button", name="Add rule", exact=True).click()
    prod.get_by_role("button", name="Add rule", exact=True).click()
    label(page, "Rule 2 Attribute").fill("email")
    label(page, "Rule 2 Operator").select_option("matches")
    label(page, "Rule 2 Pattern").fill("^admin@")
    expect(prod.locator('[data-path="rules[1]"] .verdict')).to_have_text(
        "✓ the engine accepts this pattern (runs in linear time)")
    label(page, "Rule 2 Pattern").fill("^(?=admin)")
    expect(prod.locator('[data-path="rules[1]"] .verdict')).to_have_text("")

    row = prod.locator('[data-path="rules[1]"]')
    expect(row.locator(".errors")).to_contain_text("Value:")
    expect(row.locator(".errors")).to_contain_text("lookahead or lookbehind")
    expect(label(page, "Rule 2 Pattern")).to_have_attribute("aria-invalid", "true")
    expect(prod.locator('[data-path="rules[0]"] .errors')).to_contain_text("Attribute:")  # no field named yet
    shot(page, "editor-error")
    prod.get_by_role("button", name="Save targeting in Production").click()
    expect(prod.locator(".save-status")).to_contain_text("Not saved")
    assert FlagState.objects.get(flag__key="checkout", environment__key="production").rules == []
    assert not AuditEntry.objects.filter(action="flag.updated").exists()


def test_raw_json_toggle__round_trips_every_demo_flag_unchanged(editor_page):
    page = editor_page
    call_command("load_demo_data")
    for spec in DEMO_FLAGS:
        open_flag(page, spec["key"])
        prod = panel(page)
        toggle = prod.get_by_role("button", name="Raw JSON for Production")
        toggle.click()
        expect(toggle).to_have_attribute("aria-pressed", "true")
        raw = prod.get_by_label("Rules JSON for Production")
        assert json.loads(raw.input_value()) == spec["rules"], spec["key"]
        toggle.click()  # back to the editor, then raw again: still the same JSON
        toggle.click()
        assert json.loads(raw.input_value()) == spec["rules"], spec["key"]
        toggle.click()
        expect(prod.locator(".rule-summary")).not_to_be_empty()
        expect(prod.get_by_role("button", name="Save targeting in Production")).to_be_disabled()  # no change

    # an edit in raw JSON comes back into the editor's rows
    open_flag(page, "new-checkout")
    prod = panel(page)
    prod.get_by_role("button", name="Raw JSON for Production").click()
    prod.get_by_label("Rules JSON for Production").fill('[{"type": "percentage", "operator": "less_than", "value": 75}]')
    prod.get_by_role("button", name="Raw JSON for Production").click()
    expect(label(page, "Rule 1 Percent of users")).to_have_value("75")
    prod.get_by_role("button", name="Save targeting in Production").click()
    expect(prod.locator(".save-status")).to_contain_text("Saved")
    assert FlagState.objects.get(flag__key="new-checkout", environment__key="production").rules == [
        {"type": "percentage", "operator": "less_than", "value": 75}]


def test_evaluate_as__every_environment_side_by_side_with_the_deciding_rule(editor_page, page_flag):
    page = editor_page
    page_flag("checkout", rules=[{"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}])
    open_flag(page, "checkout")
    page.get_by_label("User id").fill("user-1")
    page.get_by_label("Context (JSON)").fill('{"plan": "free"}')
    page.get_by_role("button", name="Evaluate").click()

    table = page.locator("#evaluate-as-result table")
    expect(table.locator('td[data-env="production"]').nth(3)).to_have_text("RULE_MISMATCH")
    expect(table.locator('td[data-env="staging"]').nth(4)).to_have_text("rules[0]")
    expect(table).to_contain_text("looked at plan, saw free")
    expect(panel(page).locator('[data-path="rules[0]"]')).to_have_class("rule decided")
    expect(panel(page).locator('[data-path="rules[0]"]')).to_have_attribute("data-matched", "false")
    shot(page, "evaluate-as")

    page.get_by_label("Context (JSON)").fill('{"plan": ')
    page.get_by_role("button", name="Evaluate").click()
    expect(page.locator("#evaluate-context-error")).to_contain_text("Not valid JSON")


def test_admin__the_editor_over_the_rules_textarea__the_form_posts_its_json(editor_page, page_flag):
    page = editor_page
    flag = page_flag("checkout", rules=[{"type": "user", "operator": "in", "value": ["u1"]}])
    page.goto(f"{page.site.http_url}/admin/flags/flag/{flag.pk}/change/")
    prod = page.locator(".targeting-panel").filter(has=page.get_by_role("button", name="Raw JSON for Production"))
    expect(prod.locator(".rule-summary")).to_have_text("When user is u1, then everyone.")
    expect(page.get_by_label("Rules JSON for Production")).to_be_hidden()
    prod.get_by_label("Rule 1 User ids", exact=True).fill("u1\nu2, u3")
    prod.get_by_role("button", name="Add rule", exact=True).click()
    prod.get_by_label("Rule 2 Type", exact=True).select_option("device")
    prod.get_by_label("Rule 2 Device", exact=True).select_option("tablet")
    expect(prod.locator(".rule-summary")).to_have_text("When user is u1, u2 or u3 and device is tablet, then everyone.")
    prod.get_by_role("button", name="Raw JSON for Production").click()
    raw = page.get_by_label("Rules JSON for Production")
    expect(raw).to_be_visible()
    expected = [{"type": "user", "operator": "in", "value": ["u1", "u2", "u3"]},
                {"type": "device", "operator": "is", "value": "tablet"}]
    assert json.loads(raw.input_value()) == expected
    shot(page, "admin-editor")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert FlagState.objects.get(flag__key="checkout", environment__key="production").rules == expected
    assert FlagState.objects.get(flag__key="checkout", environment__key="staging").rules == [
        {"type": "user", "operator": "in", "value": ["u1"]}]
    assert AuditEntry.objects.filter(action="flag.updated", environment="production").count() == 1


def rest_evaluate(server, key, flag, user_id, context=None):
    request = urllib.request.Request(f"{server.http_url}/api/evaluate", method="POST",
                                     data=json.dumps({"flagId": flag, "userId": user_id, "context": context or {}}).encode(),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for_flag(server, key, flag):
    """Until the server serves `flag`, created in this process: another process picks a change up
    within its staleness bound (the embedded leg has no cross-process notices). Through the SDK
    snapshot, which samples no evaluation context."""
    request = urllib.request.Request(f"{server.http_url}/api/sdk/snapshot",
                                     headers={"Authorization": f"Bearer {key}"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=10) as response:
            if flag in [served["key"] for served in json.loads(response.read())["flags"]]:
                return
        time.sleep(0.05)
    raise AssertionError(f"the server did not serve {flag} within 5 s")


def wait_for_version(server, key, flag, before):
    """Until the server answers from a version after `before` (it picks a change up within its
    staleness bound)."""
    deadline = time.monotonic() + 5
    while rest_evaluate(server, key, flag, "probe")["version"] == before and time.monotonic() < deadline:
        time.sleep(0.05)


def test_variants__a_50_25_25_split_built_with_rows__saved_and_served_over_rest(editor_page, page_flag):
    page = editor_page
    page_flag("pricing", kind="multivariate", variants=[{"key": "control", "weight": 100, "value": "blue"}])
    sdk_key = make_key("sdk", environment="production")
    open_flag(page, "pricing")
    section = page.locator("#variants-editor")
    section.get_by_label("Variant 1 Weight", exact=True).fill("50")
    expect(section.locator(".total")).to_have_text("Total weight: 50 (must be 100: add 50)")
    expect(section.get_by_role("button", name="Save variants")).to_be_disabled()
    for number, (key, value) in enumerate([("green", '{"color": "green"}'), ("red", '"red"')], start=2):
        section.get_by_role("button", name="Add variant").click()
        section.get_by_label(f"Variant {number} Key", exact=True).fill(key)
        section.get_by_label(f"Variant {number} Weight", exact=True).fill("25")
        section.get_by_label(f"Variant {number} Value (JSON)", exact=True).fill(value)
    expect(section.locator(".total")).to_have_text("Total weight: 100 ✓")
    section.get_by_label("Variant 3 Value (JSON)", exact=True).fill("red")  # not JSON
    expect(section.locator('[data-path="variants[2]"]')).to_contain_text("Not valid JSON")
    expect(section.get_by_role("button", name="Save variants")).to_be_disabled()
    section.get_by_label("Variant 3 Value (JSON)", exact=True).fill('"red"')
    before = rest_evaluate(page.site, sdk_key, "pricing", "probe")["version"]
    section.get_by_role("button", name="Save variants").click()
    expect(section.locator(".save-status")).to_have_text("Saved: every environment serves the new split.")
    wait_for_version(page.site, sdk_key, "pricing", before)

    assert Flag.objects.get(key="pricing").variants == [
        {"key": "control", "weight": 50, "value": "blue"}, {"key": "green", "weight": 25, "value": {"color": "green"}},
        {"key": "red", "weight": 25, "value": "red"}]
    served = {}
    for n in range(200):
        answer = rest_evaluate(page.site, sdk_key, "pricing", f"user-{n}")
        served[answer["variant"]] = served.get(answer["variant"], 0) + 1
    assert set(served) == {"control", "green", "red"} and 70 <= served["control"] <= 130, served
    assert rest_evaluate(page.site, sdk_key, "pricing", "user-7") == rest_evaluate(page.site, sdk_key, "pricing", "user-7")


def test_variants__served_when_off_chosen_per_environment__saved_and_served_over_rest(editor_page, page_flag):
    page = editor_page
    page_flag("banner", kind="multivariate", enabled=False, variants=[{"key": "new", "weight": 100, "value": "v2"}])
    sdk_key = make_key("sdk", environment="production")
    open_flag(page, "banner")
    section = page.locator("#variants-editor")
    off = section.get_by_label("Served when off in Production", exact=True)
    expect(off).to_have_value("")
    section.get_by_role("button", name="Add variant").click()
    section.get_by_label("Variant 2 Key", exact=True).fill("legacy")
    section.get_by_label("Variant 2 Value (JSON)", exact=True).fill('{"text": "v1"}')
    off.focus()
    off.select_option("legacy")  # the options follow the rows: the new key is offered at once
    before = rest_evaluate(page.site, sdk_key, "banner", "probe")["version"]
    section.get_by_role("button", name="Save variants").click()
    expect(section.locator(".save-status")).to_have_text("Saved: every environment serves the new split.")
    wait_for_version(page.site, sdk_key, "banner", before)

    answer = rest_evaluate(page.site, sdk_key, "banner", "u1")
    assert (answer["enabled"], answer["variant"], answer["value"], answer["reason"]) == (
        False, "legacy", {"text": "v1"}, "DISABLED")
    # removing the variant served when off is flagged before saving
    section.get_by_role("button", name="Remove variant 2").click()
    expect(off).to_contain_text("legacy (removed)")
    expect(section.get_by_role("button", name="Save variants")).to_be_disabled()


def test_keyboard_only__add_fill_and_remove_a_rule(editor_page, page_flag):
    page = editor_page
    page_flag("checkout")
    open_flag(page, "checkout")
    prod = panel(page)
    prod.get_by_role("button", name="Add rule", exact=True).focus()
    page.keyboard.press("Enter")
    expect(label(page, "Rule 1 Type")).to_be_focused()  # the new row's first control
    page.keyboard.press("Tab")
    expect(label(page, "Rule 1 Attribute")).to_be_focused()
    page.keyboard.type("plan")
    page.keyboard.press("Tab")
    expect(label(page, "Rule 1 Operator")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type("premium")
    expect(prod.locator(".rule-summary")).to_have_text("When plan is premium, then everyone.")
    prod.get_by_role("button", name="Remove rule 1").focus()
    page.keyboard.press("Enter")
    expect(prod.get_by_role("button", name="Add rule", exact=True)).to_be_focused()
    expect(prod.locator(".rule-summary")).to_have_text("On for everyone.")


def test_reorder_regroup_and_retype__entered_values_kept(editor_page, page_flag):
    page = editor_page
    page_flag("checkout", rules=[{"type": "user", "operator": "in", "value": ["u1", "u2"]},
                                 {"type": "all", "rules": [{"type": "custom", "field": "plan", "operator": "in",
                                                            "value": ["pro", "team"], "caseInsensitive": True}],
                                  "description": "paying"}])
    open_flag(page, "checkout")
    prod = panel(page)
    prod.get_by_role("button", name="Move rule 2 up").click()
    expect(prod.get_by_role("button", name="Move rule 2 up")).to_be_focused()  # focus follows the button's place
    label(page, "Rule 1 Type").select_option("any")  # all -> any keeps the children and the description
    label(page, "Rule 1 Type").select_option("not")  # a group -> not keeps its first child
    label(page, "Rule 1 Type").select_option("all")  # and back
    prod.get_by_role("button", name="Raw JSON for Production").click()
    assert json.loads(prod.get_by_label("Rules JSON for Production").input_value()) == [
        {"type": "all", "description": "paying", "rules": [
            {"type": "custom", "field": "plan", "operator": "in", "value": ["pro", "team"], "caseInsensitive": True}]},
        {"type": "user", "operator": "in", "value": ["u1", "u2"]}]


def pick_recent(page, user_id):
    """Choose the recent context of `user_id` in the "Recent contexts" picker."""
    picker = page.get_by_label("Recent contexts", exact=True)
    expect(picker.locator("option", has_text=user_id)).to_have_count(1)
    picker.select_option(picker.locator("option", has_text=user_id).get_attribute("value"))


def test_evaluate_as__a_recent_real_context_picked__on_the_page_and_in_the_admin(flushing_page, page_flag):
    page = flushing_page
    flag = page_flag("checkout", rules=[{"type": "custom", "field": "plan", "operator": "equals",
                                         "value": "premium"}])
    sdk_key = make_key("sdk", environment="production")
    wait_for_flag(page.site, sdk_key, "checkout")
    # Evaluations over REST with an SDK key: one sample per flag per second, so a second apart
    assert rest_evaluate(page.site, sdk_key, "checkout", "user-free", {"plan": "free", "country": "DE"})[
        "reason"] == "RULE_MISMATCH"
    time.sleep(1.1)
    assert rest_evaluate(page.site, sdk_key, "checkout", "user-premium", {"plan": "premium"})["enabled"] is True
    # ... flushed by the server (0.3 s): with Redis, this process reads them from the shared cache too
    if os.environ.get("REDIS_URL"):
        deadline = time.monotonic() + 10
        while len(Recorder().recent.read("checkout")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [s["userId"] for s in Recorder().recent.read("checkout")] == ["user-premium", "user-free"]
    else:
        time.sleep(1)

    open_flag(page, "checkout")
    # the targeting editor offers the attributes seen in recent evaluations first
    panel(page).get_by_role("button", name="Add rule", exact=True).click()
    options = panel(page).locator('[data-path="rules[0]"] datalist option')
    # expect() retries: the recent attributes arrive by a fetch that may finish after the click
    expect(options.first).to_have_attribute("label", "plan (seen in recent evaluations)")
    expect(options.first).to_have_attribute("value", "plan")
    expect(options.nth(1)).to_have_attribute("value", "country")

    pick_recent(page, "user-free")
    expect(page.get_by_label("User id")).to_have_value("user-free")
    assert json.loads(page.get_by_label("Context (JSON)").input_value()) == {"plan": "free", "country": "DE"}
    page.get_by_role("button", name="Evaluate").click()
    table = page.locator("#evaluate-as-result table")
    expect(table.locator("caption")).to_have_text("Evaluated as user-free")
    expect(table.locator('td[data-env="production"]').nth(3)).to_have_text("RULE_MISMATCH")
    expect(table).to_contain_text("looked at plan, saw free")
    shot(page, "evaluate-as-recent")

    pick_recent(page, "user-premium")
    page.get_by_role("button", name="Evaluate").click()
    expect(table.locator("caption")).to_have_text("Evaluated as user-premium")
    expect(table.locator('td[data-env="production"]').first).to_have_text("ON")
    expect(table.locator('td[data-env="production"]').nth(3)).to_have_text("TARGETING_MATCH")

    # the admin's flag page: the same panel, module and endpoints, below the change form
    page.goto(f"{page.site.http_url}/admin/flags/flag/{flag.pk}/change/")
    pick_recent(page, "user-free")
    page.get_by_role("button", name="Evaluate", exact=True).click()
    table = page.locator("#evaluate-as-result table")
    expect(table.locator('td[data-env="staging"]').nth(3)).to_have_text("RULE_MISMATCH")
    prod = page.locator(".targeting-panel").filter(has=page.get_by_role("button", name="Raw JSON for Production"))
    expect(prod.locator('[data-path="rules[0]"]')).to_have_attribute("data-matched", "false")  # outlined
    shot(page, "admin-evaluate-as")
    assert FlagState.objects.get(flag__key="checkout", environment__key="production").rules == [
        {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}]  # nothing saved
