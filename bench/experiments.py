"""What exposures cost evaluation: throughput with exposure recording on vs off, in the same run
(interleaved rounds, best of short windows, as bench/analytics.py), at two levels:

  rest    POST /api/evaluate of a multivariate flag through the whole stack (in-process test
          client, the fast lane, SQLite throwaway database), users cycling through 10,000 ids
  engine  snapshot.evaluate() + analytics record() (which calls the exposure hook) alone

"off" detaches the hook (Recorder.on_variant = None); analytics counting stays on in both, so the
ratio is the exposures' own cost. Goal (issue 20): < 3% on rest. Also prints POST /api/events
throughput (batches of 100) for scale.

    .venv/bin/python bench/experiments.py [--seconds 1] [--rounds 5]
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
db = Path(tempfile.mkdtemp()) / "bench-experiments.sqlite3"
os.environ.update(DJANGO_SETTINGS_MODULE="flagsite.settings", DATABASE_URL=f"sqlite:///{db}",
                  FLAGS_ANALYTICS_AUTOFLUSH="true", FLAGS_ANALYTICS_FLUSH_SECONDS="2",
                  FLAGS_RATE_LIMIT_EVALUATE="off")
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
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
