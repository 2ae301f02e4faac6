"""The experiment pages in a real browser (Playwright, Debian's Chromium, a real web server): the
list links to a seeded experiment whose results page shows the verdict, a row per variant with its
interval drawn, the SRM check, and paints its Chart.js charts, with no CSP violation."""

import pytest
from playwright.sync_api import expect

from tests.experiments.world import seeded
from tests.pages.test_browser import browser, log_in, shot, site, staff_user  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.needs("chromium")]


def test_results_page__verdict_intervals_srm_and_charts(browser, site, staff_user):  # noqa: F811
    seeded(users=2000, uplift=1.0)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, site)
    page.get_by_role("link", name="Experiments").click()
    row = page.locator('tr[data-experiment="checkout-test"]')
    expect(row).to_contain_text("RUNNING")
    expect(row).to_contain_text("2000")
    row.get_by_role("link", name="Checkout test").click()

    expect(page.get_by_role("heading", name="Checkout test")).to_be_visible()
    expect(page.locator("#users")).to_have_text("2000")
    expect(page.locator("#srm")).to_contain_text("No sample ratio mismatch")
    expect(page.locator("#verdict")).to_contain_text("treatment is better than control with")
    purchase = page.locator('section[data-metric="purchase"]')
    expect(purchase.locator('tr[data-variant="treatment"] .ci .range.good')).to_be_visible()
    expect(purchase.locator('tr[data-variant="treatment"] .chance')).to_have_text(">99%")
    page.wait_for_function("window.experimentCharts && window.experimentCharts.exposures")
    charts = page.evaluate("""() => {
        const c = window.experimentCharts;
        const painted = (id) => { const cv = document.getElementById(id);
            const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; };
        return {metrics: Object.keys(c).filter(k => k !== 'exposures').sort(),
                exposed: c.exposures.data.datasets.reduce((a, ds) => a + ds.data.reduce((x, y) => x + y, 0), 0),
                interval: c.purchase.data.datasets[0].data[0],
                painted: painted('uplift-purchase') > 500 && painted('chart-exposures') > 500};
    }""")
    assert charts["metrics"] == ["order-value", "purchase", "revenue"]
    assert charts["exposed"] == 2000 and charts["painted"]
    assert 0 < charts["interval"][0] < charts["interval"][1]  # the planted uplift: the interval excludes 0
    shot(page, "experiment-results")
    context.close()
