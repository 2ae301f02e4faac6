"""Regenerate docs/screenshots/*.png: the dashboard (desktop and 390 px wide), a multivariate flag's
page, an experiment's results, the targeting editor and "evaluate as", the create form, the audit log and the admin's flag page and list, on the demo data plus a few operator actions, in a
throwaway SQLite database. Playwright drives Debian's Chromium (/usr/bin/chromium; never a
downloaded browser) against the web server (granian ASGI, bench._common.granian_command) started here.

    .venv/bin/python scripts/screenshots.py
"""

import base64
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
USER, PASSWORD = "ops", "screenshots-only"
MAX_BYTES = 350_000  # the admin flag page with an editor per environment is ~305 KB


def seed():
    """Demo data, then what an operator does in the first minutes: a kill everywhere, a toggle, a
    rule edit; and a day of evaluations for the A/B test."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from analytics import services as analytics_services
    from analytics.hll import HyperLogLog
    from audit.actor import Actor
    from flags import services
    from flags.selectors import flag_get

    call_command("migrate", interactive=False, verbosity=0)
    call_command("load_demo_data", verbosity=0)
    user = get_user_model().objects.create_superuser(USER, None, PASSWORD)

    def act():  # each call is one request of its own, as from the dashboard
        return Actor.for_user(user, request_id=uuid.uuid4().hex)

    services.flag_toggle(actor=act(), flag=flag_get("dark-mode"), environment="staging", enabled=False)
    services.flag_update(actor=act(), flag=flag_get("mobile-redesign"), environment="production",
                         data={"rules": [{"type": "device", "operator": "in", "value": ["mobile"]}]})
    services.flag_kill(actor=act(), flag=flag_get("checkout-upsell"), reason="Upsell errors after deploy 412")

    hour = int(time.time()) // 3600
    counts, users = [], []
    for back in range(24):
        n = 40 + 25 * (back % 6)
        counts += [["production", "pricing-experiment", "control", True, hour - back, n],
                   ["production", "pricing-experiment", "treatment", True, hour - back, n + back % 4]]
        sketch = HyperLogLog.of(f"user-{back}-{i}" for i in range(n)).to_bytes()
        users.append(["production", "pricing-experiment", hour - back, base64.b64encode(sketch).decode()])
    analytics_services.rollup_apply(batch={"counts": counts, "users": users})
    seed_experiment(act())
    return flag_get("dark-mode").pk


def seed_experiment(actor):
    """An experiment on the demo's pricing A/B test: three metrics, 6,000 users over 5 days and
    their purchases (treatment converts ~12% more), through the same writes the flush uses."""
    import random
    from datetime import UTC, datetime

    from experiments import services as experiments

    experiments.metric_create(actor=actor, key="purchase", name="Purchase within 24 h", kind="conversion",
                              event="purchase", window_hours=24)
    experiments.metric_create(actor=actor, key="revenue", name="Revenue per user", kind="sum", event="purchase")
    experiments.metric_create(actor=actor, key="refunds", name="Refunds per user", kind="count", event="refund",
                              higher_is_better=False)
    experiment = experiments.experiment_create(
        actor=actor, key="pricing-test", name="Cheaper plan, card layout", flag="pricing-experiment",
        environment="production", control="control", primary_metric="purchase", secondary_metrics=["revenue"],
        guardrail_metrics=["refunds"], hypothesis="A $8.99 price on a card layout converts more visitors.")
    experiment = experiments.experiment_start(actor=actor, experiment=experiment)
    # five days of data need a start five days ago: backdated here, in this throwaway database only
    rng, start = random.Random(20), experiment.started_at.timestamp() - 5 * 86400
    type(experiment).all_objects.filter(pk=experiment.pk).update(started_at=datetime.fromtimestamp(start, tz=UTC))
    exposures, events = [], []
    for i in range(6000):
        user, variant = f"user-{i}", ("control", "treatment")[i % 2]
        first = start + 1 + rng.uniform(0, 5 * 86400 - 7200)
        exposures.append(["production", "pricing-experiment", user, variant, variant, first, first, 0])
        if rng.random() < (0.10 if variant == "control" else 0.112):
            when = first + rng.uniform(60, 20 * 3600)
            price = 9.99 if variant == "control" else 8.99
            events.append(["production", "purchase", user, price, when, {}, f"p-{i}", when])
            if rng.random() < 0.05:
                events.append(["production", "refund", user, None, when + 3600, {}, f"r-{i}", when + 3600])
    experiments.exposures_upsert(rows=exposures)
    experiments.events_write(rows=events)


def serve(port):
    """The production web command (granian ASGI: pages, static files, /ws) on 127.0.0.1:port."""
    from bench._common import Server, granian_command

    try:
        return Server("web", granian_command(port, extra=["--log-level", "warning"]), port=port, timeout=60)
    except RuntimeError as exc:
        raise SystemExit(f"the web server did not start: {exc}") from exc


def shoot(url, admin_flag_id):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        desktop = browser.new_context(viewport={"width": 1280, "height": 800})
        page = desktop.new_page()
        page.goto(f"{url}/")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        # one kill from the dashboard itself: three environments, one audit entry on the audit page
        expect(page.locator("#live-status")).to_have_text("Live: changes appear as they happen", timeout=15_000)
        page.locator('tr[data-flag="new-checkout"] td[data-env="production"] [data-role="kill"]').click()
        page.locator("#kill-reason").fill("Payment provider timeouts")
        page.locator("#kill-dialog").get_by_role("button", name="Kill flag").click()
        page.goto(f"{url}/")
        expect(page.locator("#live-status")).to_have_text("Live: changes appear as they happen", timeout=15_000)
        save(page, "dashboard-desktop")

        page.goto(f"{url}/flags/pricing-experiment")
        page.wait_for_function("window.flagsiteCharts && window.flagsiteCharts.variants")
        save(page, "flag-detail-multivariate")
        page.goto(f"{url}/experiments/pricing-test")
        page.wait_for_function("window.experimentCharts && window.experimentCharts.exposures")
        save(page, "experiment-results")
        page.goto(f"{url}/flags/dark-mode")  # the targeting editor and "evaluate as" on nested rules
        targeting = page.locator("section.editor-section").filter(has=page.get_by_role("heading", name="Targeting"))
        expect(targeting.locator(".env-targeting:visible .rule-summary")).not_to_be_empty()
        page.get_by_label("User id").fill("user-42")
        page.get_by_label("Context (JSON)").fill('{"appVersion": "2.4.1", "signupDate": "2024-03-01", '
                                                  '"locale": "en-GB", "age": 17, "plan": "pro"}')
        page.get_by_role("button", name="Evaluate").click()
        evaluate = page.locator("section.editor-section").filter(has=page.get_by_role("heading", name="Evaluate as"))
        expect(evaluate.locator("table")).to_be_visible()
        save(evaluate, "evaluate-as")
        save(targeting, "targeting-editor")  # with the rules that user matched (green) and missed (red)
        page.goto(f"{url}/audit/")
        save(page, "audit-log")
        page.goto(f"{url}/admin/flags/flag/{admin_flag_id}/change/")
        save(page, "admin-flag")
        page.goto(f"{url}/admin/flags/flag/")
        save(page, "admin-flag-list")
        page.goto(f"{url}/flags/new/")  # the create form, filled in as an operator would
        page.get_by_label("Name", exact=True).fill("Holiday banner")
        page.get_by_label("Key", exact=True).fill("holiday-banner")
        page.get_by_label("Description").fill("Seasonal banner on the home page")
        page.get_by_label("Tags").fill("marketing, q4")
        page.get_by_label("Multivariate").check()
        for n, (key, weight, value) in enumerate([("red", "50", '"#c62828"'), ("green", "50", '"#2e7d32"')], start=1):
            page.get_by_label(f"Variant {n} key").fill(key)
            page.get_by_label(f"Variant {n} weight").fill(weight)
            page.get_by_label(f"Variant {n} value").fill(value)
        save(page, "create-flag")

        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                    storage_state=desktop.storage_state())
        page = phone.new_page()
        page.goto(f"{url}/")
        expect(page.locator("#live-status")).to_have_text("Live: changes appear as they happen", timeout=15_000)
        save(page, "dashboard-mobile")
        browser.close()


def save(target, name):
    """A whole page, or one element of it (a locator)."""
    path = OUT / f"{name}.png"
    target.screenshot(path=str(path), **({"full_page": True} if hasattr(target, "goto") else {}))
    size = path.stat().st_size
    print(f"{path.relative_to(ROOT)}: {size // 1000} KB")
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is over {MAX_BYTES // 1000} KB")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flagsite-screenshots-") as tmp:
        # a database of its own; embedded cache and channel layer (no Redis)
        os.environ.pop("REDIS_URL", None)
        os.environ.update(DATABASE_URL=f"sqlite:///{tmp}/db.sqlite3", DJANGO_SETTINGS_MODULE="flagsite.settings")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        admin_flag_id = seed()
        from bench._common import free_port

        port = free_port()
        server = serve(port)
        try:
            shoot(f"http://127.0.0.1:{port}", admin_flag_id)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
