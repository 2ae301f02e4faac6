"""What exposures cost evaluation: throughput with exposure recording on vs off, in the same run
(interleaved rounds, best of short windows, as bench/analytics.py), at two levels:

  rest    POST /api/evaluate of a multivariate flag through the whole stack (in-process test
          client, the fast lane, SQLite throwaway database), users cycling through 10,000 ids
  engine  snapshot.evaluate() + analytics record() (which calls the exposure hook) alone

"off" detaches the hook (Recorder.on_variant = None); analytics counting stays on in both, so the
ratio is the exposures' own cost. Goal (issue 20): < 3% on rest. Also prints POST /api/events
throughput (batches of 100) for scale.

    .venv/bin/python bench/experiments.py [--seconds 1] [--rounds 5]

--analysis: the results of an experiment with 1M exposed users and 5M events (three metrics:
conversion within 24 h, revenue per user with CUPED, revenue per pageview) on the PostgreSQL
database in DATABASE_URL, bulk-loaded with generate_series. Goal (issue 20): < 10 s. It EMPTIES
that database's experiments tables first: give it a throwaway database.

    DATABASE_URL=postgres://... .venv/bin/python bench/experiments.py --analysis [--users 1000000] [--events 5000000]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path[:0] = [str(ROOT), str(ROOT / "python-sdk")]
ANALYSIS = "--analysis" in sys.argv
if ANALYSIS:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("--analysis needs DATABASE_URL=postgres://... (a throwaway database)")
else:
    db = Path(tempfile.mkdtemp()) / "bench-experiments.sqlite3"
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
os.environ.update(DJANGO_SETTINGS_MODULE="flagsite.settings", FLAGS_ANALYTICS_AUTOFLUSH="true",
                  FLAGS_ANALYTICS_FLUSH_SECONDS="2", FLAGS_RATE_LIMIT_EVALUATE="off")
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)

import json  # noqa: E402

from django.test import Client  # noqa: E402

from analytics import counters  # noqa: E402
from audit.actor import Actor  # noqa: E402
from experiments import buffers  # noqa: E402
from experiments.models import Event, Exposure  # noqa: E402
from flags import services  # noqa: E402
from flags.models import Environment  # noqa: E402
from flags.snapshot import get_snapshot  # noqa: E402

USERS = [f"user-{i}" for i in range(10_000)]


def best_rate(fn, seconds, window=0.02):
    best, n, deadline = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        calls, start = 0, time.perf_counter()
        end = start + window
        while time.perf_counter() < end:
            for _ in range(10):
                fn(n)
                n += 1
            calls += 10
        best = max(best, calls / (time.perf_counter() - start))
    return best


def setup():
    actor = Actor.system("bench")
    envs = Environment.objects.values_list("key", flat=True)
    services.flag_create(actor=actor, key="checkout", name="Checkout", kind="multivariate",
                         variants=[{"key": "control", "weight": 50, "value": "blue"},
                                   {"key": "treatment", "weight": 50, "value": "green"}],
                         states={env: {"enabled": True} for env in envs})
    return services.api_key_create(actor=actor, name="bench", kind="sdk",
                                   environment=Environment.objects.get(key="production"))[1]


def analysis_bench(users, events, reuse=False):
    """Load `users` exposures and `events` events with generate_series (no Python per row), then
    time experiment_results(): one aggregate query for the three metrics, then the statistics.
    reuse: keep what an earlier run loaded (loading takes minutes), if it has that many rows."""
    from datetime import timedelta

    from django.db import connection
    from django.db.models import Q

    from experiments import services as experiment_services
    from experiments.models import Experiment, Metric
    from flags.models import Flag

    existing = Experiment.all_objects.filter(key="checkout-test").first()
    if reuse and existing and Exposure.objects.filter(experiment=existing).count() == users \
            and Event.objects.count() == events:
        return _time_analysis(existing, existing.started_at + timedelta(seconds=1))
    actor = Actor.system("bench")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE experiments_event, experiments_exposure, experiments_experiment_secondary_metrics, "
                       "experiments_experiment_guardrail_metrics")
    Experiment.all_objects.all().delete()
    Metric.all_objects.all().delete()
    Flag.all_objects.filter(Q(key="checkout")).delete()
    setup()
    for key, kind, event, extra in (("purchase", "conversion", "purchase", {"window_hours": 24}),
                                    ("revenue", "sum", "purchase", {}),
                                    ("revenue-per-view", "ratio", "purchase", {"denominator_event": "pageview"})):
        experiment_services.metric_create(actor=actor, key=key, name=key, kind=kind, event=event, **extra)
    experiment = experiment_services.experiment_create(
        actor=actor, key="checkout-test", name="Checkout", flag="checkout", environment="production",
        control="control", primary_metric="purchase", secondary_metrics=["revenue"],
        guardrail_metrics=["revenue-per-view"])
    experiment = experiment_services.experiment_start(actor=actor, experiment=experiment)
    env = Environment.objects.get(key="production").pk
    start = experiment.started_at + timedelta(seconds=1)
    week = 7 * 86400
    load = time.perf_counter()
    with connection.cursor() as cursor:
        # user g: exposed at start + (g mod a week); even ids control, odd treatment
        cursor.execute(
            "INSERT INTO experiments_exposure (experiment_id, flag_id, environment_id, user_id, variant, last_variant, "
            "first_seen, last_seen, variant_changes) SELECT %s, %s, %s, 'u' || g, v, v, t, t, 0 FROM ("
            "SELECT g, CASE WHEN g %% 2 = 0 THEN 'control' ELSE 'treatment' END AS v, "
            "%s + (g %% %s) * interval '1 second' AS t FROM generate_series(1, %s) g) s",
            [experiment.pk, experiment.flag_id, env, start, week, users])
        # events of random users, from 3 days before to 7 days after their exposure; purchases 20%
        # of events in control, 22% in treatment (a planted +10%), values 10..100
        cursor.execute(
            "INSERT INTO experiments_event (environment_id, event, user_id, value, timestamp, properties, client_id, "
            "received_at) SELECT %s, CASE WHEN r < (CASE WHEN u %% 2 = 0 THEN 0.20 ELSE 0.22 END) THEN 'purchase' "
            "ELSE 'pageview' END, 'u' || u, CASE WHEN r < 0.22 THEN 10 + 90 * random() END, "
            "%s + ((u %% %s) + floor(random() * 864000) - 259200) * interval '1 second', '{}'::jsonb, 'e' || g, now() "
            "FROM (SELECT g, 1 + floor(random() * %s)::int AS u, random() AS r FROM generate_series(1, %s) g) s",
            [env, start, week, users, events])
        cursor.execute("ANALYZE experiments_event")
        cursor.execute("ANALYZE experiments_exposure")
    print(f"loaded {users:,} exposures and {events:,} events in {time.perf_counter() - load:.1f}s (PostgreSQL)")
    _time_analysis(experiment, start)


def _time_analysis(experiment, start):
    """Three runs of the one analysis path (the page's and the API's): the median, and its split
    between the database (experiment_results' sqlSeconds) and the statistics in Python."""
    import statistics
    from datetime import timedelta

    from experiments import analysis

    now = start + timedelta(days=30)
    runs = []
    for run in (1, 2, 3):
        began = time.perf_counter()
        results = analysis.experiment_results(experiment, now=now)
        runs.append((time.perf_counter() - began, results["sqlSeconds"]))
        print(f"  analysis run {run}: {runs[-1][0]:.2f}s ({runs[-1][1]:.2f}s SQL, {runs[-1][0] - runs[-1][1]:.3f}s "
              f"Python) for {results['users']:,} users (3 metrics; load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} CPUs)")
    total, sql = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    print(f"  analysis median of 3: {total:.2f}s = {sql:.2f}s SQL + {total - sql:.3f}s Python "
          f"(goal < 10 s: {'met' if total < 10 else 'NOT met'} at this load)")
    for metric in results["metrics"]:
        row = metric["variants"][1]
        print(f"    {metric['metric']:<17} control {metric['variants'][0]['value']:.4f}  treatment {row['value']:.4f}  "
              f"uplift {row['relativeUplift']:+.2%}  p {row['pValue']:.2g}  -> {row['verdict']}")
    print(f"    SRM: {results['srm']['message']}")


def _experiment(running):
    """Start (a fresh draft: a stopped experiment cannot start again) or stop the experiment on
    the bench flag; every process's exposure table starts over, as in production."""
    from experiments import services as experiment_services
    from experiments.models import Experiment, Metric

    actor = Actor.system("bench")
    for experiment in Experiment.all_objects.filter(status="running"):
        experiment_services.experiment_stop(actor=actor, experiment=experiment)
    if not running:
        return
    if not Metric.all_objects.filter(key="bench-buy").exists():
        experiment_services.metric_create(actor=actor, key="bench-buy", name="Buy", kind="conversion", event="buy")
    draft = experiment_services.experiment_create(
        actor=actor, key=f"bench-{Experiment.all_objects.count()}", name="Bench", flag="checkout",
        environment="production", control="control", primary_metric="bench-buy")
    experiment_services.experiment_start(actor=actor, experiment=draft)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--analysis", action="store_true")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--reuse", action="store_true", help="keep the rows an earlier --analysis run loaded")
    args = parser.parse_args()
    if args.analysis:
        return analysis_bench(args.users, args.events, reuse=args.reuse)
    key = setup()
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    bodies = [json.dumps({"flagId": "checkout", "userId": user}) for user in USERS]

    def rest(i):
        client.post("/api/evaluate", bodies[i % 10_000], content_type="application/json")

    snapshot = get_snapshot("production")
    evaluate, record = snapshot.evaluate, counters.record

    def engine(i):
        user = USERS[i % 10_000]
        record(evaluate("checkout", user, None), user, None)

    hook = counters.recorder.on_variant
    for i in range(20_000):  # warm: every user seen once (the steady state is a dedupe hit)
        rest(i)
    results = {(level, mode): [] for level in ("rest", "engine") for mode in ("on", "off")}
    for n in range(args.rounds):
        for mode in ("on", "off") if n % 2 == 0 else ("off", "on"):
            counters.recorder.on_variant = hook if mode == "on" else None
            results[("rest", mode)].append(best_rate(rest, args.seconds))
            results[("engine", mode)].append(best_rate(engine, args.seconds))
    counters.recorder.on_variant = hook
    print(f"exposure recording on vs off ({args.rounds} interleaved rounds of {args.seconds:.1f}s; best round)")
    for level in ("rest", "engine"):
        on, off = max(results[(level, "on")]), max(results[(level, "off")])
        print(f"  {level:<7} off {off:>10,.0f}/s   on {on:>10,.0f}/s   on/off {on / off:.3f} "
              f"(cost {100 * (1 - on / off):+.1f}%)")

    # recording on, with and without an experiment running on the flag (started and stopped
    # between rounds; each start restarts the exposure table, so every user is re-sent once, in
    # the warm-up, not in the timed window)
    experiment = {"idle": [], "running": []}
    for n in range(args.rounds):
        for mode in ("idle", "running") if n % 2 == 0 else ("running", "idle"):
            _experiment(mode == "running")
            for i in range(10_000):
                rest(i)
            buffers.flush()
            experiment[mode].append(best_rate(rest, args.seconds))
    _experiment(False)
    idle, running = max(experiment["idle"]), max(experiment["running"])
    print(f"  rest    no experiment {idle:>10,.0f}/s   experiment running {running:>10,.0f}/s   "
          f"running/none {running / idle:.3f}")

    events = [{"event": "purchase", "userId": USERS[i], "value": 1.5} for i in range(100)]
    body = json.dumps({"events": events})
    start, posts = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        client.post("/api/events", body, content_type="application/json")
        posts += 1
    elapsed = time.perf_counter() - start
    flush_start = time.perf_counter()
    buffers.flush()
    flushed = time.perf_counter() - flush_start
    print(f"  POST /api/events: {posts * 100 / elapsed:,.0f} events/s accepted (batches of 100); "
          f"rows: {Event.objects.count():,} events, {Exposure.objects.count():,} exposures "
          f"(last flush {flushed:.2f}s, SQLite)")


if __name__ == "__main__":
    main()
