"""The experiments pages (staff with experiments.view_experiment): the list of the project's
experiments and the results page (verdict, a row per variant with the interval drawn, the SRM
banner), a 403 without the permission. The real browser: tests/experiments/test_browser.py."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from experiments import services
from tests.api.conftest import SYSTEM
from tests.experiments.world import seeded

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("ops", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def test_list_and_results_pages(staff_client):
    seeded(users=300, uplift=1.0)
    page = staff_client.get("/experiments/").content.decode()
    assert 'data-experiment="checkout-test"' in page and "RUNNING" in page and ">300<" in page
    page = staff_client.get("/experiments/checkout-test").content.decode()
    assert 'id="srm"' in page and "No sample ratio mismatch" in page and "srm-banner" not in page
    assert page.count('data-variant="treatment"') == 3  # one row per metric
    assert 'class="ci"' in page and "treatment:" in page
    assert staff_client.get("/experiments/nope").status_code == 404


def test_results_page__srm_banner(staff_client):
    experiment, _ = seeded(users=0)
    start = experiment.started_at.timestamp() + 1
    services.exposures_upsert(rows=[["production", "checkout", f"s{i}", v, v, start, start, 0]
                                    for i, v in enumerate(["control"] * 700 + ["treatment"] * 300)])
    page = staff_client.get("/experiments/checkout-test").content.decode()
    assert 'class="srm-banner" role="alert"' in page and "do not trust these results" in page


def test_staff_without_the_permission__403(client):
    seeded(users=2)
    user = get_user_model().objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_flag"))
    client.force_login(user)
    assert client.get("/experiments/").status_code == 403
    assert client.get("/experiments/checkout-test").status_code == 403
    assert "Experiments</a>" not in client.get("/").content.decode()


def test_start_stop_and_ship_from_the_page__through_the_services(staff_client):
    from experiments.models import Experiment
    from flags.models import Flag
    from tests.experiments.world import checkout_flag, metrics

    checkout_flag()
    metrics()
    services.experiment_create(actor=SYSTEM, key="e", name="E", flag="checkout", environment="production",
                               control="control", primary_metric="purchase")
    page = staff_client.get("/experiments/e").content.decode()
    assert 'action="/experiments/e/start"' in page and 'action="/experiments/e/stop"' not in page
    assert staff_client.post("/experiments/e/start").status_code == 302
    assert Experiment.objects.get().status == "running"
    page = staff_client.get("/experiments/e").content.decode()
    assert "e started" in page and 'action="/experiments/e/ship"' in page
    response = staff_client.post("/experiments/e/ship", {"ship": ""}, follow=True)
    assert "Must be one of the flag&#x27;s variants" in response.content.decode()
    assert Experiment.objects.get().status == "running"  # refused: nothing written
    staff_client.post("/experiments/e/ship", {"ship": "treatment"})
    assert (Experiment.objects.get().status, Experiment.objects.get().shipped_variant) == ("stopped", "treatment")
    assert [v["weight"] for v in Flag.objects.get(key="checkout").variants] == [0, 100]


def test_audience__the_flags_targeting__users_it_serves_off_are_not_in_the_experiment(staff_client):
    """An experiment on a subset of users: the flag's rules in its environment pick them; the rest
    get the off variant, are not exposed and are not counted. The page says who is in."""
    from analytics import counters
    from experiments import buffers
    from flags import services as flag_services
    from flags.snapshot import get_snapshot
    from tests.experiments.world import checkout_flag, metrics

    flag = checkout_flag()
    flag_services.flag_update(actor=SYSTEM, flag=flag, environment="production", data={
        "rules": [{"type": "geo", "operator": "in", "value": ["DE", "FR"]}]})
    metrics()
    services.experiment_start(actor=SYSTEM, experiment=services.experiment_create(
        actor=SYSTEM, key="eu-test", name="EU only", flag="checkout", environment="production",
        control="control", primary_metric="purchase"))
    from experiments.models import Experiment

    Experiment.all_objects.filter(key="eu-test").update(started_at=Experiment.all_objects.get(key="eu-test").started_at
                                                        .replace(year=2020))
    snapshot = get_snapshot("production")
    for i in range(40):
        country = ("DE", "US", "FR", "JP")[i % 4]
        result = snapshot.evaluate("checkout", f"u{i}", {"country": country})
        counters.recorder.record(result, f"u{i}", {"country": country})
    buffers.flush()
    page = staff_client.get("/experiments/eu-test").content.decode()
    assert '<dd id="users">20</dd>' in page  # the DE and FR half only
    assert 'id="audience"' in page and "DE" in page.split('id="audience"')[1].split("</p>")[0]
