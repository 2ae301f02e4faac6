"""What the rate limiter costs an evaluation, in this process. Prints a table; a few seconds.

    .venv/bin/python bench/ratelimit.py                                  # locmem cache
    REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python bench/ratelimit.py  # the shared Redis

Variants, interleaved round by round on one thread, best round kept, at the production default
FLAGS_RATE_LIMIT_EVALUATE=10000/s (batches of 100):
  off       FLAGS_RATE_LIMIT_EVALUATE=off: charge() returns at once (the baseline)
  batched   throttling.charge(): the units come from the shared counter 100 at a time
  per-call  what charge() did before issue 15: one cache incr per call (throttling.count)

Every variant charges a new client every 10000 calls, so no call is refused: the cost measured is
that of calls that go ahead. "cache calls/req" counts incr and add on the Django cache.
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
os.environ.pop("DATABASE_URL", None)  # no database needed

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402

from flagsite.api import throttling  # noqa: E402

LIMIT = "10000/s"
PER_CLIENT = 10_000  # calls per client: never past the limit
calls = {"n": 0}


def counted(real):
    def wrapped(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)
    return wrapped


cache.incr, cache.add = counted(cache.incr), counted(cache.add)


def per_call(scope, ident, weight=1):
    """charge() as it was: one shared-cache incr per call."""
    rate = throttling.rate_for(scope)
    if rate is None:
        return None
    limit, period = rate
    now = time.time()
    window = int(now // period)
    total = throttling.count(f"flags:rate:{scope}:{ident}:{period}:{window}", period, min(limit, weight))
    if total is None or total <= limit:
        return None
    return max(1, math.ceil((window + 1) * period - now))


VARIANTS = {"off": ("off", throttling.charge), "batched": (LIMIT, throttling.charge), "per-call": (LIMIT, per_call)}


def run(name, seconds, run_id):
    rate, charge = VARIANTS[name]
    settings.FLAGS_RATE_LIMIT_EVALUATE = rate
    done, refused, before = 0, 0, calls["n"]
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        ident = f"key:bench-{name}-{run_id}-{done // PER_CLIENT}"
        for _ in range(1000):
            refused += charge("evaluate", ident) is not None
        done += 1000
    elapsed = time.perf_counter() - start
    return elapsed / done * 1e6, (calls["n"] - before) / done, refused


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.4, help="per variant and round")
    args = parser.parse_args()
    backend = "redis " + os.environ["REDIS_URL"] if os.environ.get("REDIS_URL") else "locmem (no REDIS_URL)"
    best = {}
    for round_ in range(args.rounds):
        for name in VARIANTS:
            us, per_req, refused = run(name, args.seconds, f"{os.getpid()}-{round_}")
            assert refused == 0, f"{name}: {refused} calls refused; the bench measures calls that go ahead"
            if name not in best or us < best[name][0]:
                best[name] = (us, per_req)
    off = best["off"][0]
    print(f"charge() at FLAGS_RATE_LIMIT_EVALUATE={LIMIT}, cache: {backend}")
    print(f"{'variant':<10} {'us/call':>9} {'vs off':>8} {'cache calls/req':>16}")
    for name, (us, per_req) in best.items():
        print(f"{name:<10} {us:>9.3f} {us / off:>7.1f}x {per_req:>16.4f}")
    print(f"batched vs per-call: {best['per-call'][0] / best['batched'][0]:.1f}x cheaper per call")


if __name__ == "__main__":
    main()
