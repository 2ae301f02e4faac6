"""Metrics and experiments: services (validation with field paths, audit, lifecycle, shipping the
winner through the flag service), exposures owned by the running experiment, and results computed
in the database that agree with the same statistics computed from each user's values in Python."""

import pytest

from audit.models import AuditEntry
from experiments import analysis, services, stats
from experiments.models import Experiment, Exposure
from flags.errors import Conflict, ValidationFailed
from flags.models import Flag
from tests.api.conftest import SYSTEM, create_flag
from tests.experiments.world import checkout_flag, far_future, metrics, seeded

pytestmark = pytest.mark.django_db


def fields_of(excinfo):
    return set(excinfo.value.fields)


def test_metric_create__bad_fields__400_paths_and_nothing_written():
    with pytest.raises(ValidationFailed) as excinfo:
        services.metric_create(actor=SYSTEM, key="bad key", name="", kind="median", event="",
                               denominator_event="x", window_hours=0, higher_is_better="yes")
    assert fields_of(excinfo) == {"key", "name", "kind", "event", "denominatorEvent", "windowHours", "higherIsBetter"}
    with pytest.raises(ValidationFailed) as excinfo:
        services.metric_create(actor=SYSTEM, key="r", name="R", kind="ratio", event="buy")
    assert fields_of(excinfo) == {"denominatorEvent"}
    assert not AuditEntry.objects.filter(target_type="metric").exists()


def test_experiment_create__validates_flag_control_and_metrics():
    create_flag("plain")
    checkout_flag()
    metrics()
    base = {"actor": SYSTEM, "key": "e", "name": "E", "environment": "production", "primary_metric": "purchase"}
    with pytest.raises(ValidationFailed) as excinfo:
        services.experiment_create(**base, flag="plain", control="on")
    assert fields_of(excinfo) == {"flag"}
    with pytest.raises(ValidationFailed) as excinfo:
        services.experiment_create(**{**base, "environment": "moon", "primary_metric": "nope"}, flag="checkout",
                                   control="purple", secondary_metrics=["revenue", "gone"],
                                   guardrail_metrics=["revenue", "revenue"])
    assert fields_of(excinfo) == {"control", "environment", "primaryMetric", "secondaryMetrics[1]",
                                  "guardrailMetrics[1]"}
    assert not Experiment.objects.exists()


def test_lifecycle__audited__one_running_per_flag_and_environment():
    checkout_flag()
    metrics()
    def make(key):
        return services.experiment_create(actor=SYSTEM, key=key, name=key, flag="checkout", environment="production",
                                          control="control", primary_metric="purchase")

    first, second = make("first"), make("second")
    first = services.experiment_start(actor=SYSTEM, experiment=first)
    assert first.status == "running" and first.weights == {"control": 0.5, "treatment": 0.5}
    with pytest.raises(Conflict):
        services.experiment_start(actor=SYSTEM, experiment=second)
    with pytest.raises(Conflict):
        services.experiment_start(actor=SYSTEM, experiment=first)
    with pytest.raises(Conflict):
        services.metric_delete(actor=SYSTEM, metric=first.primary_metric)
    services.experiment_stop(actor=SYSTEM, experiment=first)
    with pytest.raises(Conflict):
        services.experiment_stop(actor=SYSTEM, experiment=first)
    services.experiment_start(actor=SYSTEM, experiment=second)  # the flag is free again
    assert list(AuditEntry.objects.filter(target_type="experiment").order_by("id").values_list("action", "target_key")) == [
        ("experiment.created", "first"), ("experiment.created", "second"), ("experiment.started", "first"),
        ("experiment.stopped", "first"), ("experiment.started", "second")]


def test_stop_and_ship__the_flag_serves_the_winner_through_the_flag_service():
    experiment, _ = seeded(users=10)
    with pytest.raises(ValidationFailed) as excinfo:
        services.experiment_stop(actor=SYSTEM, experiment=experiment, ship="purple")
    assert fields_of(excinfo) == {"ship"}
    services.experiment_stop(actor=SYSTEM, experiment=experiment, ship="treatment")
    flag = Flag.objects.get(key="checkout")
    assert [(v["key"], v["weight"]) for v in flag.variants] == [("control", 0), ("treatment", 100)]
    actions = list(AuditEntry.objects.order_by("-id").values_list("action", flat=True)[:2])
    assert actions == ["experiment.stopped", "flag.updated"]
    assert Experiment.objects.get().shipped_variant == "treatment"


def test_exposures__only_while_running_and_after_the_start__owned_by_the_experiment():
    experiment, _ = seeded(users=4)
    start = experiment.started_at.timestamp()
    services.exposures_upsert(rows=[["production", "checkout", "early", "control", "control", start - 5, start - 5, 0],
                                    ["production", "checkout", "u0", "treatment", "treatment", start + 9, start + 9, 0]])
    owned = dict(Exposure.objects.filter(experiment=experiment).values_list("user_id", "variant_changes"))
    assert sorted(owned) == ["u0", "u1", "u2", "u3"] and owned["u0"] == 1  # changed: counted once, flagged
    assert list(Exposure.objects.filter(experiment=None).values_list("user_id", flat=True)) == ["early"]
    services.experiment_stop(actor=SYSTEM, experiment=experiment)
    services.exposures_upsert(rows=[["production", "checkout", "late", "control", "control", start + 60, start + 60, 0]])
    assert Exposure.objects.filter(experiment=experiment).count() == 4


def python_summary(truth, metric, variant):
    """The stats package's input computed from each user's values, without the database."""
    rows = [t for t in truth.values() if t["variant"] == variant]
    if metric == "order-value":
        num = [t["revenue"] for t in rows]
        den = [t["orders"] for t in rows]
        return stats.VariantSummary(variant, n=len(rows), sum=sum(num), sum_squares=sum(x * x for x in num),
                                    denominator_sum=sum(den), denominator_sum_squares=sum(d * d for d in den),
                                    cross_sum=sum(x * d for x, d in zip(num, den)))
    values = [t[metric] for t in rows]
    pre = [t[f"pre_{metric}"] for t in rows]
    return stats.VariantSummary(variant, n=len(rows), sum=sum(values),
                                sum_squares=None if metric == "purchase" else sum(v * v for v in values),
                                pre_sum=sum(pre), pre_sum_squares=sum(p * p for p in pre),
                                pre_cross_sum=sum(v * p for v, p in zip(values, pre)))


def test_results__database_sums_agree_with_per_user_python(django_assert_max_num_queries):
    experiment, truth = seeded(users=1000, uplift=1.0)
    with django_assert_max_num_queries(12):
        results = analysis.experiment_results(experiment, now=far_future())
    assert results["users"] == 1000 and [v["users"] for v in results["variants"]] == [500, 500]
    assert results["srm"]["flagged"] is False
    by_metric = {m["metric"]: m for m in results["metrics"]}
    assert [(m["metric"], m["role"]) for m in results["metrics"]] == [
        ("purchase", "primary"), ("revenue", "secondary"), ("order-value", "guardrail")]
    for key, kind in (("purchase", "conversion"), ("revenue", "mean"), ("order-value", "ratio")):
        summaries = [python_summary(truth, key, v) for v in ("control", "treatment")]
        cuped = key != "order-value"
        expected = stats.analyze_metric(metric_type=kind, variants=summaries, control="control", use_cuped=cuped)
        got = by_metric[key]["variants"][1]
        c = expected.comparison("treatment")
        assert got["relativeUplift"] == pytest.approx(c.relative, rel=1e-9)
        assert got["pValue"] == pytest.approx(c.p_value, rel=1e-6)
        assert got["chanceToBeatControl"] == pytest.approx(c.chance_to_beat_control, rel=1e-6)
        assert got["sequentialInterval"] == pytest.approx([c.sequential_relative_ci.low, c.sequential_relative_ci.high])
        assert by_metric[key]["variants"][0]["value"] == pytest.approx(expected.variant("control").mean)
        assert (by_metric[key]["cuped"] is not None) == cuped
    primary = by_metric["purchase"]["variants"][1]
    assert primary["verdict"].startswith("treatment is better than control with")
    assert results["verdict"] == [primary["verdict"]]
    assert sum(d["users"] for d in results["exposuresByDay"]) == 1000


def test_results__srm_flagged_and_verdict_says_do_not_trust():
    experiment, _ = seeded(users=0)
    start = experiment.started_at.timestamp() + 1
    services.exposures_upsert(rows=[["production", "checkout", f"s{i}", v, v, start, start, 0]
                                    for i, v in enumerate(["control"] * 600 + ["treatment"] * 400)])
    results = analysis.experiment_results(experiment, now=far_future())
    assert results["srm"]["flagged"] is True and "Sample ratio mismatch" in results["srm"]["message"]
    assert results["metrics"][0]["variants"][1]["verdict"].startswith("do not trust these results")


def test_results__not_started_or_one_sided__not_enough_data_never_an_error():
    checkout_flag()
    metrics()
    draft = services.experiment_create(actor=SYSTEM, key="d", name="D", flag="checkout", environment="production",
                                       control="control", primary_metric="purchase")
    results = analysis.experiment_results(draft)
    assert results["users"] == 0 and results["srm"] is None
    assert results["metrics"][0]["variants"][1]["verdict"].startswith("not enough data")
