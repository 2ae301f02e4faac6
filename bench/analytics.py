"""Evaluation throughput with analytics counting on vs off, in the same run (interleaved rounds).

Two levels:
  rest   POST /api/evaluate through the full Django/DRF stack (in-process test client, SQLite
         throwaway database), with analytics.counters.record in the view vs replaced by a no-op.
  engine snapshot.evaluate() alone vs evaluate() + record(): the counting's raw cost per call.

    .venv/bin/python bench/analytics.py [--seconds 2] [--rounds 5]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
db = Path(tempfile.mkdtemp()) / "bench-analytics.sqlite3"
os.environ.update(DJANGO_SETTINGS_MODULE="flagsite.settings", DATABASE_URL=f"sqlite:///{db}",
                  FLAGS_ANALYTICS_AUTOFLUSH="true", FLAGS_ANALYTICS_FLUSH_SECONDS="2")
os.environ.pop("REDIS_URL", None)

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)

from rest_framework.test import APIClient  # noqa: E402

from analytics import counters  # noqa: E402
from analytics.models import EvaluationRollup  # noqa: E402
from audit.actor import Actor  # noqa: E402
from flags import apis, services  # noqa: E402
from flags.models import Environment  # noqa: E402
from flags.snapshot import get_snapshot  # noqa: E402


class Off:
    @staticmethod
    def record(*args, **kwargs):
        pass

    record_all = record


def rate(fn, seconds):
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            fn(n)
            n += 1
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    actor = Actor.system("bench")
    envs = Environment.objects.values_list("key", flat=True)
    services.flag_create(actor=actor, key="checkout", name="Checkout", states={
        env: {"enabled": True, "rules": [{"type": "geo", "operator": "in", "value": ["US", "CA"]},
                                         {"type": "percentage", "operator": "less_than", "value": 30}]}
        for env in envs})
    key = services.api_key_create(actor=actor, name="bench", kind="sdk",
                                  environment=Environment.objects.get(key="production"))[1]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    users = [f"user-{i}" for i in range(10_000)]

    def rest(i):
        client.post("/api/evaluate", {"flagId": "checkout", "userId": users[i % 10_000],
                                      "context": {"country": "US"}}, format="json")

    snapshot = get_snapshot("production")
    evaluate, record, context = snapshot.evaluate, counters.record, {"country": "US"}

    def engine_off(i):
        evaluate("checkout", users[i % 10_000], context)

    def engine_on(i):
        user = users[i % 10_000]
        record(evaluate("checkout", user, context), user, context)

    results = {"rest": ([], []), "engine": ([], [])}
    counted_before = counters.recorder.pending_evaluations()
    for _ in range(args.rounds):  # interleaved: drift hits both sides alike
        apis.analytics_counters = Off
        results["rest"][0].append(rate(rest, args.seconds))
        apis.analytics_counters = counters
        results["rest"][1].append(rate(rest, args.seconds))
        results["engine"][0].append(rate(engine_off, args.seconds))
        results["engine"][1].append(rate(engine_on, args.seconds))
    counters.flush()
    print(f"analytics counting cost ({args.rounds} interleaved rounds of {args.seconds:.1f}s; median)")
    for level, (off, on) in results.items():
        off_m, on_m = sorted(off)[len(off) // 2], sorted(on)[len(on) // 2]
        print(f"  {level:<7} off {off_m:>12,.0f}/s   on {on_m:>12,.0f}/s   cost {100 * (1 - on_m / off_m):5.1f}%"
              f"   ({1e6 / on_m - 1e6 / off_m:+.2f} us per evaluation)")
    stored = sum(EvaluationRollup.objects.values_list("evaluations", flat=True))
    print(f"  rows after the final flush: {stored:,} evaluations stored "
          f"(pending before the run: {counted_before}, after: {counters.recorder.pending_evaluations()})")


if __name__ == "__main__":
    main()
