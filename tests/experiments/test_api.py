"""REST: metrics CRUD, experiments create / start / stop (and ship) / results, on the default
project's paths and a project's own, with field errors as 400 and nothing written."""

import pytest

from audit.models import AuditEntry
from experiments.models import Experiment, Metric
from flags.models import Flag
from projects import scope
from projects import services as project_services
from tests.api.conftest import SYSTEM, Client, user_with
from tests.experiments.world import checkout_flag, seeded

pytestmark = pytest.mark.django_db

PERMS = [f"experiments.{a}_{m}" for a in ("view", "add", "change", "delete") for m in ("metric", "experiment")]


@pytest.fixture
def scientist(db):
    client = Client()
    client.force_authenticate(user_with("scientist", PERMS + ["flags.view_flag"]))
    return client


def test_metric_crud(scientist):
    r = scientist.post("/api/metrics", {"name": "Purchase", "kind": "conversion", "event": "buy", "windowHours": 24})
    assert r.status_code == 201 and r.json()["key"] == "purchase" and r.json()["windowHours"] == 24
    r = scientist.post("/api/metrics", {"name": "Bad", "kind": "ratio", "event": "buy"})
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"denominatorEvent"}
    r = scientist.post("/api/metrics", {"name": "X", "kind": "median", "event": "buy", "extra": 1})
    assert r.status_code == 400 and set(r.json()["error"]["fields"]) == {"extra"}
    r = scientist.patch("/api/metrics/purchase", {"windowHours": 48, "higherIsBetter": False})
    assert r.status_code == 200 and (r.json()["windowHours"], r.json()["higherIsBetter"]) == (48, False)
    assert scientist.get("/api/metrics").json()["results"][0]["key"] == "purchase"
    assert scientist.delete("/api/metrics/purchase").status_code == 204
    assert scientist.get("/api/metrics/purchase").status_code == 404
    assert list(AuditEntry.objects.filter(target_type="metric").order_by("id").values_list("action", flat=True)) == [
        "metric.created", "metric.updated", "metric.deleted"]


def test_experiment_lifecycle_and_results(scientist):
    checkout_flag()
    scientist.post("/api/metrics", {"key": "purchase", "name": "Purchase", "kind": "conversion", "event": "buy"})
    bad = scientist.post("/api/experiments", {"name": "E", "flag": "checkout", "environment": "production",
                                              "control": "purple", "primaryMetric": "nope"})
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"control", "primaryMetric"}
    assert not Experiment.objects.exists()
    r = scientist.post("/api/experiments", {"name": "Checkout test", "flag": "checkout", "environment": "production",
                                            "control": "control", "primaryMetric": "purchase"})
    assert r.status_code == 201 and r.json()["status"] == "draft" and r.json()["key"] == "checkout-test"
    r = scientist.post("/api/experiments/checkout-test/start")
    assert r.status_code == 200 and r.json()["weights"] == {"control": 0.5, "treatment": 0.5}
    assert scientist.post("/api/experiments/checkout-test/start").status_code == 409
    results = scientist.get("/api/experiments/checkout-test/results")
    assert results.status_code == 200 and results.json()["users"] == 0
    assert scientist.get("/api/experiments").json()["results"][0]["status"] == "running"
    # shipping changes the flag: it needs flags.change_flag too
    r = scientist.post("/api/experiments/checkout-test/stop", {"ship": "treatment"})
    assert r.status_code == 403
    r = scientist.post("/api/experiments/checkout-test/stop", {"reason": "done"})
    assert r.status_code == 200 and r.json()["status"] == "stopped" and r.json()["shippedVariant"] == ""
    assert [v["weight"] for v in Flag.objects.get(key="checkout").variants] == [50, 50]


def test_results_api__numbers_and_verdicts(scientist):
    seeded(users=200)
    body = scientist.get("/api/experiments/checkout-test/results").json()
    assert body["users"] == 200 and body["srm"]["flagged"] is False
    treatment = body["metrics"][0]["variants"][1]
    assert {"relativeUplift", "relativeInterval", "chanceToBeatControl", "pValue", "sequentialInterval",
            "expectedLoss", "verdict", "moreUsersNeeded"} <= set(treatment)


def test_project_paths__own_experiments_only(scientist):
    project_services.project_create(actor=SYSTEM, key="team-b", name="Team B")
    with scope.using("team-b"):
        checkout_flag()
    r = scientist.post("/api/projects/team-b/metrics", {"key": "m", "name": "M", "kind": "count", "event": "e"})
    assert r.status_code == 201
    assert Metric.all_objects.get().project_id == "team-b"
    r = scientist.post("/api/projects/team-b/experiments", {"key": "b", "name": "B", "flag": "checkout",
                                                            "environment": "production", "control": "control",
                                                            "primaryMetric": "m"})
    assert r.status_code == 201
    assert scientist.get("/api/experiments").json()["results"] == []
    assert scientist.get("/api/projects/team-b/experiments/b").json()["flag"] == "checkout"
    assert scientist.get("/api/experiments/b").status_code == 404


def test_hard_deleting_the_flag__takes_its_experiment_along(scientist):
    seeded(users=4)
    admin = Client()
    admin.force_authenticate(user_with("flag-admin", ["flags.delete_flag"]))
    assert admin.delete("/api/flags/checkout?hard=true").status_code == 204
    assert not Experiment.objects.exists()
    assert scientist.get("/api/experiments/checkout-test").status_code == 404
