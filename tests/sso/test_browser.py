"""Single sign-on in a real browser: Chromium (Debian's, through Playwright) signs in to the
dashboard and the admin through the real provider (tests/sso/conftest.py), served by the real web
server (granian) configured by environment variables only, as an operator would."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect, sync_playwright

from projects.models import RoleGrant
from tests.pages.test_browser import ARGS, CSP_WATCH, shot
from tests.servers import start_web
from tests.sso.conftest import sso_env
from tests.tools import CHROMIUM

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.needs("chromium")]


@pytest.fixture
def page(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs a loop in this thread
    violations = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.add_init_script(CSP_WATCH)
        context.on("console", lambda m: violations.append(m.text) if "CSP violation" in m.text else None)
        yield context.new_page()
        browser.close()
    assert violations == []


@pytest.fixture
def sso_site(oidc_provider, projects):
    server = start_web(**sso_env(oidc_provider, FLAGS_OIDC_SUPERUSER_GROUPS="flag-admins",
                                 FLAGS_PASSWORD_LOGIN="false", FLAGS_ANALYTICS_AUTOFLUSH="false"))
    yield server
    server.stop()


def sign_in_at_provider(page, provider, sub):
    page.wait_for_url(f"{provider.url}/oauth2/authorize?*")
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()


def test_dashboard_and_admin__sign_in_with_sso_in_chromium(page, sso_site, oidc_provider):
    oidc_provider.set_user("ops@example.com", groups=["flag-admins", "payments-leads"])

    # Given the dashboard, which sends an anonymous visitor to the login page
    page.goto(f"{sso_site.http_url}/")
    expect(page.get_by_role("link", name="Sign in with SSO")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)  # FLAGS_PASSWORD_LOGIN=false: no form
    shot(page, "sso-login")

    # When the user signs in at the provider
    page.get_by_role("link", name="Sign in with SSO").click()
    sign_in_at_provider(page, oidc_provider, "ops@example.com")

    # Then they are back on the dashboard, signed in
    page.wait_for_url(f"{sso_site.http_url}/")
    expect(page.get_by_role("heading", name="Flags")).to_be_visible()
    expect(page.locator(".topbar .who")).to_have_text("ops@example.com")
    user = get_user_model().objects.get(username="ops@example.com")
    assert user.is_superuser and user.is_staff
    assert sorted((g.project_id, g.role) for g in RoleGrant.objects.filter(group__user=user)) == [
        ("payments", "admin"), ("search", "viewer")]

    # The admin: signed out, its login page offers SSO too and leads back to the admin
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{sso_site.http_url}/admin/")
    page.get_by_role("link", name="Sign in with SSO").click()
    sign_in_at_provider(page, oidc_provider, "ops@example.com")
    page.wait_for_url(f"{sso_site.http_url}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


def test_member_with_only_a_role__lands_on_their_projects_dashboard(page, sso_site, oidc_provider):
    from flags import services as flag_services
    from projects import scope
    from tests.api.conftest import SYSTEM

    with scope.using("search"):
        flag_services.flag_create(actor=SYSTEM, key="search-ranking", name="Search ranking", states={})
    with scope.using("payments"):
        flag_services.flag_create(actor=SYSTEM, key="payments-only", name="Payments only", states={})
    oidc_provider.set_user("dev@example.com", groups=["search-team"])  # editor in search; not staff

    page.goto(f"{sso_site.http_url}/")
    page.get_by_role("link", name="Sign in with SSO").click()
    sign_in_at_provider(page, oidc_provider, "dev@example.com")

    # Then they land on the dashboard of their project, and see nothing else
    page.wait_for_url(f"{sso_site.http_url}/")
    expect(page.get_by_role("heading", name="Flags")).to_be_visible()
    expect(page.get_by_role("link", name="Search ranking")).to_be_visible()
    expect(page.locator("select[name=project] option")).to_have_count(1)
    expect(page.locator("select[name=project] option")).to_have_text("Search")
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    assert "payments-only" not in page.content()
    user = get_user_model().objects.get(username="dev@example.com")
    assert not user.is_staff and not user.is_superuser
