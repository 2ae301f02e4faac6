"""experiments/analysis.py's summaries (the sums the database hands the stats package) against a
straightforward per-user computation in Python over the same rows, for every metric kind: so an
optimisation of the query cannot silently change a number. The seeded data puts events on every
boundary the definitions name (the window's end, the first exposure, the pre-period's start, the
experiment's end), valueless events, other environments and other event names."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from experiments import analysis, services
from experiments.models import Event, Experiment, Exposure, Metric
from tests.api.conftest import SYSTEM
from tests.experiments.world import checkout_flag

pytestmark = pytest.mark.django_db

KINDS = [  # key, kind, event, denominator, window hours
    ("converted", "conversion", "buy", "", 24),
    ("converted-ever", "conversion", "buy", "", None),
    ("buys", "count", "buy", "", None),
    ("views-24h", "count", "view", "", 24),
    ("revenue", "sum", "buy", "", None),
    ("revenue-48h", "sum", "buy", "", 48),
    ("order-value", "ratio", "buy", "buy", None),
    ("revenue-per-view", "ratio", "buy", "view", 72),
]


def world(seed, users=300):
    """A stopped experiment on every metric kind; returns (experiment, metrics in analysis order)."""
    checkout_flag()
    for key, kind, event, denominator, window in KINDS:
        services.metric_create(actor=SYSTEM, key=key, name=key, kind=kind, event=event,
                               denominator_event=denominator, window_hours=window)
    experiment = services.experiment_start(actor=SYSTEM, experiment=services.experiment_create(
        actor=SYSTEM, key="exact", name="Exact", flag="checkout", environment="production", control="control",
        primary_metric="converted", secondary_metrics=[k for k, *_ in KINDS[1:5]],
        guardrail_metrics=[k for k, *_ in KINDS[5:]]))
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    stop = start + timedelta(days=6)
    Experiment.all_objects.filter(pk=experiment.pk).update(started_at=start)
    rng = random.Random(seed)
    s0 = start.timestamp()
    exposures, events = [], []
    for i in range(users):
        user = f"u{i}"
        first_variant = rng.choice(("control", "treatment", "treatment"))
        last_variant = first_variant if rng.random() < 0.9 else ("control" if first_variant == "treatment" else "treatment")
        first = s0 + 1 + rng.randrange(0, 5 * 86400)
        exposures.append(["production", "checkout", user, first_variant, last_variant, first, first + 60,
                          int(first_variant != last_variant)])
        edges = [0, 24 * 3600, 24 * 3600 - 1, 48 * 3600, 72 * 3600, -1, -14 * 86400, -14 * 86400 - 1,
                 stop.timestamp() - first, stop.timestamp() - first + 1]
        for _ in range(rng.randint(0, 8)):
            offset = rng.choice(edges) if rng.random() < 0.3 else rng.uniform(-16 * 86400, 7 * 86400)
            name = rng.choice(("buy", "buy", "view", "view", "view", "other"))
            value = None if rng.random() < 0.2 else round(rng.uniform(-5, 80), 2)
            env = "production" if rng.random() < 0.92 else "staging"
            when = first + offset
            events.append([env, name, user, value, when, {}, f"{user}-{len(events)}", when])
    # someone who only has events (never exposed) and an exposure before the start (not the experiment's)
    events.append(["production", "buy", "stranger", 9.0, s0 + 100, {}, "stranger-1", s0 + 100])
    exposures.append(["production", "checkout", "early", "control", "control", s0 - 5, s0 + 5, 0])
    services.exposures_upsert(rows=exposures)
    services.events_write(rows=events)
    # stopped (a fixture's shortcut past the service): events after it do not count
    Experiment.all_objects.filter(pk=experiment.pk).update(stopped_at=stop, status="stopped")
    experiment.refresh_from_db()
    assert Exposure.objects.filter(experiment=experiment).count() == users
    return experiment, [m for _, m in analysis.experiment_metrics(experiment)]


def per_user(experiment, metrics, end):
    """{variant: {"users", "changed", "metrics": [(v-sum, v-squares, a, b, c)]}} the slow, obvious way."""
    by_user = {}
    for e in Event.objects.filter(environment=experiment.environment):
        by_user.setdefault(e.user_id, []).append(e)
    out = {}
    for x in Exposure.objects.filter(experiment=experiment):
        mine = [e for e in by_user.get(x.user_id, ()) if e.timestamp <= end]
        data = out.setdefault(x.variant, {"users": 0, "changed": 0, "metrics": [[0.0] * 5 for _ in metrics]})
        data["users"] += 1
        data["changed"] += x.variant_changes > 0
        for i, m in enumerate(metrics):
            inside = [e for e in mine if x.first_seen <= e.timestamp
                      and (m.window_hours is None or e.timestamp < x.first_seen + timedelta(hours=m.window_hours))]
            before = [e for e in mine if x.first_seen - analysis.PRE_PERIOD <= e.timestamp < x.first_seen]

            def value(events, kind=m.kind, name=m.event):
                named = [e for e in events if e.event == name]
                if kind == Metric.Kind.CONVERSION:
                    return 1 if named else 0
                if kind == Metric.Kind.COUNT:
                    return len(named)
                if kind == Metric.Kind.SUM:
                    return sum(e.value or 0 for e in named)
                return sum(1 if e.value is None else e.value for e in named)  # a ratio's numerator

            v = value(inside)
            if m.kind == Metric.Kind.RATIO:
                other = sum(1 for e in inside if e.event == m.denominator_event)
            else:
                other = value(before)
            sums = data["metrics"][i]
            for j, term in enumerate((v, v * v, other, other * other, v * other)):
                sums[j] += term
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_summaries__equal_a_per_user_computation__every_metric_kind(seed):
    experiment, metrics = world(seed)
    assert sorted({m.kind for m in metrics}) == ["conversion", "count", "ratio", "sum"]
    end = experiment.stopped_at
    got = analysis.summaries(experiment, metrics, end)
    expected = per_user(experiment, metrics, end)
    assert sorted(got) == sorted(expected) == ["control", "treatment"]
    for variant, want in expected.items():
        assert got[variant]["users"] == want["users"] and got[variant]["changed"] == want["changed"]
        for m, g, w in zip(metrics, got[variant]["metrics"], want["metrics"]):
            assert list(g) == pytest.approx(w, rel=1e-9, abs=1e-6), (variant, m.key)


def test_results__every_metric_kind__the_stats_of_the_per_user_sums():
    """The page's numbers are the stats package's on those sums: CUPED on every non-ratio metric."""
    from experiments import stats

    experiment, metrics = world(3)
    results = analysis.experiment_results(experiment)
    expected = per_user(experiment, metrics, experiment.stopped_at)
    for m, shown in zip(metrics, results["metrics"]):
        summaries = [analysis._variant_summary(v, m, expected[v]["metrics"][metrics.index(m)], expected[v]["users"])
                     for v in ("control", "treatment")]
        cuped = m.kind != Metric.Kind.RATIO
        want = stats.analyze_metric(metric_type=analysis.STAT_TYPE[m.kind], variants=summaries, control="control",
                                    higher_is_better=m.higher_is_better, use_cuped=cuped)
        row = shown["variants"][1]
        assert (shown["cuped"] is not None) == cuped, m.key
        assert row["value"] == pytest.approx(want.variant("treatment").mean, rel=1e-9), m.key
        assert row["relativeUplift"] == pytest.approx(want.comparison("treatment").relative, rel=1e-9), m.key
        assert row["pValue"] == pytest.approx(want.comparison("treatment").p_value, rel=1e-6), m.key
