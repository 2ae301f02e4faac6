"""The dashboard in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium, never
a downloaded browser) against a real daphne process. Screenshots of every page go to
artifacts/screenshots/."""

import base64

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from analytics import services as analytics_services
from analytics.hll import HyperLogLog
from audit.models import AuditEntry
from flags.models import Flag, FlagState
from tests.pages.conftest import PASSWORD
from tests.servers import ROOT, start_web
from tests.tools import CHROMIUM

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.needs("chromium")]


# Reports every Content-Security-Policy violation of a page on its console (Playwright's init
# scripts are not subject to the page's policy); Chromium also logs each refusal there itself.
CSP_WATCH = ("document.addEventListener('securitypolicyviolation', e => console.error("
             "'CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))")


class CspWatchingBrowser:
    """The browser, whose contexts collect CSP violations from every page (`violations`)."""

    def __init__(self, instance):
        self.instance = instance
        self.violations = []

    def new_context(self, **kwargs):
        context = self.instance.new_context(**kwargs)
        context.add_init_script(CSP_WATCH)
        context.on("console", self._console)
        return context

    def _console(self, message):
        if "CSP violation" in message.text or "Content Security Policy" in message.text:
            self.violations.append(message.text)


@pytest.fixture
def browser(monkeypatch):
    """Every browser test also proves its pages ran with no Content-Security-Policy violation."""
    # Playwright's sync API runs a loop in this thread. monkeypatch restores the variable after
    # this test whatever happens here (a launch that fails too), so Django's async-safety checks
    # stay on for the tests after it (`check --deploy` reports async.E001 when it is set).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        instance = CspWatchingBrowser(playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS))
        yield instance
        instance.instance.close()
    assert instance.violations == [], instance.violations


@pytest.fixture
def site(transactional_db):
    server = start_web(FLAGS_WS_PING_SECONDS="5", FLAGS_ANALYTICS_AUTOFLUSH="false")
    yield server
    server.stop()


def server_password():
    """A hash the daphne process can check (the test process hashes with MD5 for speed)."""
    return PBKDF2PasswordHasher().encode(PASSWORD, "pagetests", iterations=1000)


@pytest.fixture
def staff_user(transactional_db):
    return get_user_model().objects.create(username="ops", password=server_password(), is_staff=True,
                                           is_superuser=True)


def log_in(page, site, username="ops"):
    page.goto(f"{site.http_url}/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def cell(page, flag, env):
    return page.locator(f'tr[data-flag="{flag}"] td[data-env="{env}"]')


def shot(page, name):
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_toggle_in_one_page__second_page_updates_live(browser, site, staff_user, page_flag):
    page_flag("new-checkout", tags=["payments"])
    page_flag("dark-mode", enabled=False, tags=["ui"])
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    first = context.new_page()
    log_in(first, site)
    expect(first.get_by_role("heading", name="Flags")).to_be_visible()
    second = context.new_page()
    second.goto(f"{site.http_url}/")
    for page in (first, second):
        expect(page.locator("#live-status")).to_have_text("Live: changes appear as they happen", timeout=10_000)
    expect(cell(second, "new-checkout", "production")).to_have_attribute("data-status", "on")

    cell(first, "new-checkout", "production").get_by_role("button", name="Turn new-checkout off in production").click()

    expect(cell(first, "new-checkout", "production")).to_have_attribute("data-status", "off")  # after the redirect
    expect(cell(second, "new-checkout", "production")).to_have_attribute("data-status", "off", timeout=5_000)
    expect(cell(second, "new-checkout", "production").locator('[data-role="status"]')).to_have_text("OFF")
    expect(cell(second, "new-checkout", "staging")).to_have_attribute("data-status", "on")
    assert second.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    shot(first, "overview")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, storage_state=context.storage_state())
    phone_page = phone.new_page()
    phone_page.goto(f"{site.http_url}/")
    expect(phone_page.get_by_role("heading", name="Flags")).to_be_visible()
    shot(phone_page, "overview-phone")
    phone.close()
    context.close()


def test_live_updates_keep_the_forms_in_step__stale_click_refused(browser, site, staff_user, page_flag):
    """A page updated live posts what it shows (state and version): its toggle works after another
    page's change, and a kill elsewhere swaps Kill for Restore. A page that missed a change (no
    live updates) is refused with a conflict and writes nothing."""
    page_flag("new-checkout")
    context = browser.new_context()
    first, second = context.new_page(), context.new_page()
    log_in(first, site)
    second.goto(f"{site.http_url}/")
    for page in (first, second):
        expect(page.locator("#live-status")).to_have_text("Live: changes appear as they happen", timeout=10_000)
    no_script = browser.new_context(java_script_enabled=False, storage_state=context.storage_state())
    stale = no_script.new_page()  # no JavaScript: no live updates, the page keeps what it loaded
    stale.goto(f"{site.http_url}/")

    cell(first, "new-checkout", "production").get_by_role("button", name="Turn new-checkout off in production").click()
    expect(cell(second, "new-checkout", "production")).to_have_attribute("data-status", "off", timeout=5_000)
    cell(second, "new-checkout", "production").get_by_role("button", name="Turn new-checkout on in production").click()
    expect(cell(second, "new-checkout", "production")).to_have_attribute("data-status", "on")
    assert FlagState.objects.get(flag__key="new-checkout", environment__key="production").version == 3

    cell(stale, "new-checkout", "production").get_by_role("button", name="Turn new-checkout off in production").click()
    expect(stale.locator(".messages")).to_contain_text("changed since you loaded the page")
    state = FlagState.objects.get(flag__key="new-checkout", environment__key="production")
    assert (state.enabled, state.version) == (True, 3)

    first.goto(f"{site.http_url}/")
    expect(first.locator("#live-status")).to_have_text("Live: changes appear as they happen", timeout=10_000)
    cell(second, "new-checkout", "production").get_by_role("button", name="Kill new-checkout in production").click()
    second.locator("#kill-reason").fill("errors")
    second.locator("#kill-dialog").get_by_role("button", name="Kill flag").click()
    first_cell = cell(first, "new-checkout", "production")
    expect(first_cell).to_have_attribute("data-status", "killed", timeout=5_000)
    expect(first_cell.get_by_role("button", name="Kill new-checkout in production")).to_be_hidden()
    first_cell.get_by_label("Reason for restoring new-checkout in production (audit log)").fill("fixed")
    first_cell.get_by_role("button", name="Restore new-checkout in production").click()
    expect(cell(first, "new-checkout", "production")).to_have_attribute("data-status", "on")
    assert AuditEntry.objects.get(action="flag.restored").reason == "fixed"
    no_script.close()
    context.close()


def test_kill_with_reason__cell_killed_and_audit_entry_found(browser, site, staff_user, page_flag):
    page_flag("new-checkout")
    context = browser.new_context()
    page = context.new_page()
    log_in(page, site)
    cell(page, "new-checkout", "production").get_by_role("button", name="Kill new-checkout in production").click()
    dialog = page.locator("#kill-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Kill flag").click()  # no reason: the browser refuses (required)
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason (recorded in the audit log)").fill("checkout errors spiking")
    shot(page, "kill-dialog")
    dialog.get_by_role("button", name="Kill flag").click()

    expect(cell(page, "new-checkout", "production")).to_have_attribute("data-status", "killed")
    expect(cell(page, "new-checkout", "staging")).to_have_attribute("data-status", "on")
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option("flag.killed")
    page.get_by_role("button", name="Filter").click()
    entry = page.locator('li.entry[data-action="flag.killed"]')
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("Reason: checkout errors spiking")
    expect(entry).to_contain_text("by ops")
    expect(entry.locator("td.after").first).to_be_visible()
    shot(page, "audit-log")
    context.close()


def test_flag_detail__charts_render_with_data(browser, site, staff_user, page_flag):
    page_flag("ab-test", kind="multivariate", description="Pricing page A/B test",
              variants=[{"key": "control", "weight": 50}, {"key": "treatment", "weight": 50}],
              rules=[{"type": "geo", "operator": "in", "value": ["US", "CA", "UK"]},
                     {"type": "percentage", "operator": "less_than", "value": 30}])
    hour = int(__import__("time").time()) // 3600
    counts, users = [], []
    for back, (on_a, on_b, off) in enumerate([(120, 118, 40), (90, 95, 30), (60, 61, 22), (30, 33, 9)]):
        counts += [["production", "ab-test", "control", True, hour - back, on_a],
                   ["production", "ab-test", "treatment", True, hour - back, on_b],
                   ["production", "ab-test", None, False, hour - back, off]]
        sketch = HyperLogLog.of(f"user-{back}-{i}" for i in range(50)).to_bytes()
        users.append(["production", "ab-test", hour - back, base64.b64encode(sketch).decode()])
    analytics_services.rollup_apply(batch={"counts": counts, "users": users})

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, site)
    page.goto(f"{site.http_url}/flags/ab-test")

    expect(page.get_by_text("When country is US, CA or UK, then 30% of users, serving control (50%) or treatment (50%).")
           .first).to_be_visible()
    expect(page.locator("#total-evaluations")).to_have_text("708")
    page.wait_for_function("window.flagsiteCharts && window.flagsiteCharts.variants")
    totals = page.evaluate("""() => {
        const c = window.flagsiteCharts;
        const sum = (ds) => ds.data.reduce((a, b) => a + b, 0);
        return {on: sum(c.evaluations.data.datasets[0]), off: sum(c.evaluations.data.datasets[1]),
                variants: Object.fromEntries(c.variants.data.labels.map((l, i) => [l, c.variants.data.datasets[0].data[i]])),
                painted: [...document.querySelectorAll('canvas')].every(cv => cv.width > 0 && cv.height > 0)};
    }""")
    assert totals == {"on": 607, "off": 101, "variants": {"control": 300, "treatment": 307}, "painted": True}
    # the evaluations canvas actually has drawn (non-transparent) pixels
    painted = page.evaluate("""() => {
        const cv = document.getElementById('chart-evaluations');
        const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;
    }""")
    assert painted > 1000
    shot(page, "flag-detail")
    page.goto(f"{site.http_url}/analytics/")
    expect(page.locator("#evaluations-24h")).to_have_text("708")
    page.wait_for_function("window.flagsiteCharts && window.flagsiteCharts.all")
    shot(page, "analytics")
    context.close()


def test_non_staff__cannot_reach_the_pages(browser, site, page_flag):
    page_flag("new-checkout")
    member = get_user_model().objects.create(username="member", password=server_password())
    context = browser.new_context()
    page = context.new_page()
    # The login form refuses a non-staff account
    log_in(page, site, username="member")
    expect(page.locator(".errornote")).to_contain_text("staff account")
    for path in ("/", "/flags/new-checkout", "/audit/", "/analytics/"):
        response = page.goto(f"{site.http_url}{path}")
        assert "/admin/login/" in page.url and response.status == 200
        expect(page.get_by_role("heading", name="Flags")).to_have_count(0)
    # Even with a valid session (logged in elsewhere), the pages answer 403 and show no flags
    member.refresh_from_db()  # the login attempt upgraded its password hash (and so its session hash)
    client = Client()
    client.force_login(member)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "url": site.http_url}])
    for path in ("/", "/flags/new-checkout", "/audit/", "/analytics/"):
        response = page.goto(f"{site.http_url}{path}")
        assert response.status == 403
        assert "new-checkout" not in page.content()
    context.close()


STRICT_SCRIPTS = "script-src 'self';"


def test_csp__every_page_has_a_strict_policy__admin_and_api_docs_work_under_it(browser, site, staff_user, page_flag):
    """A policy on each page (scripts from this origin only, /ws of this host allowed) and the admin
    and Swagger UI still work under it (the fixture fails the test on any violation)."""
    page_flag("csp-flag")
    context = browser.new_context()
    page = context.new_page()
    log_in(page, site)
    for path in ("/", "/flags/csp-flag", "/analytics/", "/audit/", "/admin/", "/admin/flags/flag/", "/api/docs"):
        response = page.goto(f"{site.http_url}{path}")
        policy = response.headers.get("content-security-policy", "")
        assert response.status == 200 and STRICT_SCRIPTS in policy, (path, response.status, policy)
        assert f"ws://127.0.0.1:{site.http_url.rsplit(':', 1)[1]}" in policy, policy
    page.goto(f"{site.http_url}/admin/flags/flag/")
    page.get_by_role("link", name="csp-flag").first.click()
    expect(page.locator("#content h1, #content h2").first).to_be_visible()
    page.goto(f"{site.http_url}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Flagsite API", timeout=15_000)
    expect(page.locator(".opblock").first).to_be_visible()
    context.close()


def test_overview_on_a_phone__every_environment_on_screen_and_usable(browser, site, staff_user, page_flag):
    """At 390 px the grid stacks: each flag's environments side by side under its name, production
    included, with nothing to scroll sideways."""
    page_flag("new-checkout", tags=["payments"])
    page_flag("a-flag-with-a-rather-long-key-for-a-phone", enabled=False)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    log_in(page, site)
    expect(page.locator("#live-status")).to_have_text("Live: changes appear as they happen", timeout=10_000)

    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for flag in ("new-checkout", "a-flag-with-a-rather-long-key-for-a-phone"):
        for env in ("development", "staging", "production"):
            box = cell(page, flag, env).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (flag, env, box)
    label = page.evaluate("""() => getComputedStyle(
        document.querySelector('tr[data-flag="new-checkout"] td[data-env="production"]'), '::before').content""")
    assert label == '"Production"'
    production = cell(page, "new-checkout", "production")
    production.get_by_role("button", name="Kill new-checkout in production").tap()
    page.locator("#kill-reason").fill("errors")
    page.locator("#kill-dialog").get_by_role("button", name="Kill flag").tap()
    expect(production).to_have_attribute("data-status", "killed")
    expect(production.get_by_role("button", name="Restore new-checkout in production")).to_be_in_viewport()
    shot(page, "overview-mobile")
    context.close()


def test_create_archive_and_unarchive_a_flag_from_the_dashboard(browser, site, staff_user):
    """/flags/new/ (an error shown at its field first), the flag on the overview, archived after the
    confirmation, found under the "archived" filter, unarchived: every step through the services."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, site)
    page.get_by_role("link", name="New flag").click()
    expect(page.get_by_role("heading", name="New flag")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("Summer sale banner")
    page.get_by_label("Key", exact=True).fill("summer-sale")
    page.get_by_label("Description").fill("The banner on the home page in July")
    page.get_by_label("Tags").fill("promo, q3")
    page.get_by_label("Multivariate").check()
    for n, (key, weight, value) in enumerate([("red", "60", '"#c00"'), ("blue", "50", '"#00c"')], start=1):
        page.get_by_label(f"Variant {n} key").fill(key)
        page.get_by_label(f"Variant {n} weight").fill(weight)
        page.get_by_label(f"Variant {n} value").fill(value)
    page.get_by_role("button", name="Create flag").click()
    expect(page.locator("#variants-errors")).to_contain_text("The weights total 110, not 100.")
    expect(page.get_by_label("Variant 2 key")).to_have_value("blue")  # what was typed is kept
    assert not Flag.objects.filter(key="summer-sale").exists()
    page.get_by_label("Variant 1 weight").fill("50")
    shot(page, "flag-new")
    page.get_by_role("button", name="Create flag").click()

    expect(page.get_by_role("heading", name="Summer sale banner")).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Created summer-sale")
    flag = Flag.objects.get(key="summer-sale")
    assert (flag.kind, flag.tags, [v["value"] for v in flag.variants]) == ("multivariate", ["promo", "q3"],
                                                                          ["#c00", "#00c"])
    page.get_by_role("link", name="Flags", exact=True).first.click()
    row = page.locator('tr[data-flag="summer-sale"]')
    expect(row).to_be_visible()
    expect(row.locator('td[data-env="production"]')).to_have_attribute("data-status", "off")

    row.get_by_role("link", name="Summer sale banner").click()
    page.get_by_role("link", name="Archive…").click()
    expect(page.get_by_role("heading", name="Archive summer-sale?")).to_be_visible()
    assert Flag.objects.get(key="summer-sale").archived is False  # asking wrote nothing
    page.get_by_role("button", name="Archive summer-sale").click()

    expect(page.locator(".messages")).to_contain_text("Archived summer-sale")
    expect(page.locator('tr[data-flag="summer-sale"]')).to_have_count(0)  # hidden by default
    page.get_by_label("Show").select_option("only")
    page.get_by_role("button", name="Filter").click()
    row = page.locator('tr[data-flag="summer-sale"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("archived")
    shot(page, "overview-archived")
    row.get_by_role("button", name="Unarchive summer-sale").click()

    expect(page.locator(".messages")).to_contain_text("Unarchived summer-sale")
    expect(page.locator('tr[data-flag="summer-sale"]')).to_have_count(0)  # no longer archived
    page.get_by_label("Show").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator('tr[data-flag="summer-sale"]')).to_be_visible()
    assert Flag.objects.get(key="summer-sale").archived is False
    assert list(AuditEntry.objects.filter(target_key="summer-sale").order_by("id").values_list("action", "actor")) == [
        ("flag.created", "ops"), ("flag.archived", "ops"), ("flag.unarchived", "ops")]
    context.close()
