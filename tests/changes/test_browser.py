"""Four eyes in a real browser (Playwright driving /usr/bin/chromium against a daphne process):
one user proposes a change in a protected environment and amends it, another approves and applies it, the flag
is on, and the audit log names both."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from changes import approvals
from flags.models import FlagState
from projects import services as project_services
from projects.models import Project
from tests.api.conftest import SYSTEM, create_flag
from tests.pages.test_browser import browser, log_in, server_password, shot, site  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.needs("chromium")]


def member(username, role):
    user = get_user_model().objects.create(username=username, password=server_password(), is_staff=True)
    project_services.role_grant(actor=SYSTEM, project=Project.objects.get(key="default"), role=role, user=user)
    return user


def test_open_as_one_user__approve_and_apply_as_another__audit_names_both(browser, site):  # noqa: F811
    member("ann", "editor")
    member("bob", "approver")
    create_flag("checkout", states={env: {"enabled": False} for env in ("development", "staging", "production")})
    approvals.protection_set(actor=SYSTEM, environment="production", required_approvals=1)

    ann = browser.new_context().new_page()
    log_in(ann, site, "ann")
    ann.goto(f"{site.http_url}/flags/checkout")
    expect(ann.locator('article[data-env="production"]')).to_contain_text("Protected: changes need 1 approval")
    form = ann.locator("#propose-form")
    form.get_by_label("Environment").select_option("production")
    form.get_by_label("Change").select_option("enable")
    form.get_by_label("Title").fill("Launch the new checkout")
    form.get_by_role("button", name="Propose").click()
    expect(ann.locator("#cr-status")).to_have_text("Open")
    expect(ann.locator("#cr-diff")).to_contain_text("enabled")
    expect(ann.get_by_text("You opened this request: someone else reviews it.")).to_be_visible()
    path = ann.url.removeprefix(site.http_url)
    ann.locator("#amend-link").click()  # the author amends: a new revision
    amend = ann.locator("#proposal-form")
    amend.get_by_label("Title").fill("Launch the new checkout today")
    amend.get_by_role("button", name="Amend").click()
    assert ann.url.endswith(path)
    expect(ann.locator("h1")).to_contain_text("Launch the new checkout today")
    expect(ann.locator("main")).to_contain_text("revision 2 against version 1")
    shot(ann, "change-request-open")
    ann.goto(f"{site.http_url}/flags/checkout")
    expect(ann.locator("h1 .badge.pending")).to_have_text("1 pending")
    ann.context.close()

    bob = browser.new_context().new_page()
    log_in(bob, site, "bob")
    bob.goto(f"{site.http_url}/changes/pending")
    bob.get_by_role("link", name="Launch the new checkout").click()
    assert bob.url.endswith(path)
    expect(bob.locator("#apply-form button")).to_be_disabled()  # no approval yet
    bob.locator("#review-form").get_by_label("Comment").fill("looks right")
    bob.locator("#review-form").get_by_role("button", name="Approve").click()
    expect(bob.locator("#cr-status")).to_have_text("Approved")
    bob.locator("#apply-form").get_by_role("button", name="Apply").click()
    expect(bob.locator("#cr-status")).to_have_text("Applied")
    expect(bob.locator("#cr-applied")).to_contain_text("Applied by bob")
    shot(bob, "change-request-applied")
    assert FlagState.objects.get(flag__key="checkout", environment__key="production").enabled

    bob.goto(f"{site.http_url}/audit/")
    number = path.rsplit("/", 1)[1]
    expect(bob.locator("main")).to_contain_text(f"bob applying change request #{number} by ann, approved by bob")
    shot(bob, "change-request-audit")
    bob.context.close()
