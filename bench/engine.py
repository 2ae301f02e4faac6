"""Evaluations per second of our engine against the Python peers, side by side. Prints a table.

    .venv/bin/pip install -e 'python-sdk[bench]'
    .venv/bin/python bench/engine.py [--rounds 5] [--seconds 0.3]

Cases (every call uses a different user id and builds its context dict, as a request would):
  A  boolean flag on, no rules
  B  50% rollout by user id
  C  country in [US, CA, UK] and plan == premium, then a 30% rollout
     (every user is a premium user in the US, so every call runs the whole chain)

Implementations, interleaved round by round in this one process (single thread), best round kept:
  ours       feature_flag_client.engine: snapshot.evaluate(key, user_id, context)
  flagsmith  flagsmith-flag-engine 11: get_evaluation_result(context)["flags"][key], the context
             being the environment (features + segments) plus this call's identity and traits
  unleash    UnleashClient 6 (its Rust core, yggdrasil): client.is_enabled(key, context) on a client
             bootstrapped from a features document: no network, no metrics, no registration
  floor      one bare mmh3.hash(f"{flag}:{user}") % 100 per call: what any evaluation costs at least

The "on" column is the share of calls that came back enabled: a check that every implementation
really evaluated the same rules (A 100%, B ~50%, C ~30%).

    .venv/bin/python bench/engine.py --regex [--rounds 5]

The cost of running `matches` rules on RE2 (linear time) instead of Python's backtracking `re`
(the baseline, measured in the same run): microseconds per match for a few everyday patterns on
short and 4096-character values, then per snapshot.evaluate of one flag with a `matches` rule and
per 20-flag bulk (20 such flags evaluated for one user), each with the ratio re2/re.
"""

import argparse
import gc
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import mmh3

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python-sdk"))

from feature_flag_client.engine import compile_snapshot  # noqa: E402

CASES = ("A", "B", "C")
IDS = [f"user-{i}" for i in range(1_000_000)]


# ---- ours -------------------------------------------------------------------------------------

def ours():
    snapshot = compile_snapshot(flags=[
        {"key": "a", "kind": "boolean", "enabled": True, "rules": []},
        {"key": "b", "kind": "boolean", "enabled": True,
         "rules": [{"type": "percentage", "operator": "less_than", "value": 50}]},
        {"key": "c", "kind": "boolean", "enabled": True, "rules": [
            {"type": "geo", "operator": "in", "value": ["US", "CA", "UK"]},
            {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"},
            {"type": "percentage", "operator": "less_than", "value": 30},
        ]},
    ], environment="bench", version=1)
    evaluate = snapshot.evaluate

    def run_a(ids):
        on = 0
        for user_id in ids:
            on += evaluate("a", user_id, {}).enabled
        return on

    def run_b(ids):
        on = 0
        for user_id in ids:
            on += evaluate("b", user_id, {}).enabled
        return on

    def run_c(ids):
        on = 0
        for user_id in ids:
            on += evaluate("c", user_id, {"country": "US", "plan": "premium"}).enabled
        return on

    return {"A": run_a, "B": run_b, "C": run_c}


# ---- flagsmith-flag-engine --------------------------------------------------------------------

def flagsmith():
    from flag_engine.engine import get_evaluation_result

    def environment(feature, segments=None):
        context = {"environment": {"key": "bench", "name": "bench"},
                   "features": {feature["name"]: feature}}
        if segments:
            context["segments"] = segments
        return context

    def override(name):
        return [{"key": "1", "name": name, "enabled": True, "value": None, "priority": 1}]

    env_a = environment({"key": "1", "name": "a", "enabled": True, "value": None})
    env_b = environment({"key": "1", "name": "b", "enabled": False, "value": None}, {
        "1": {"key": "1", "name": "half", "overrides": override("b"), "rules": [
            {"type": "ALL", "conditions": [{"property": "", "operator": "PERCENTAGE_SPLIT", "value": "50"}]}]},
    })
    env_c = environment({"key": "1", "name": "c", "enabled": False, "value": None}, {
        "1": {"key": "1", "name": "premium-na-30", "overrides": override("c"), "rules": [
            {"type": "ALL", "conditions": [
                {"property": "country", "operator": "IN", "value": "US,CA,UK"},
                {"property": "plan", "operator": "EQUAL", "value": "premium"},
                {"property": "", "operator": "PERCENTAGE_SPLIT", "value": "30"},
            ]}]},
    })

    # The identity key is given up front (else the engine derives it by copying the context on
    # every call): the faster of the two ways to call it.
    def run_a(ids):
        on = 0
        for user_id in ids:
            on += get_evaluation_result(
                {**env_a, "identity": {"identifier": user_id, "key": f"bench_{user_id}"}})["flags"]["a"]["enabled"]
        return on

    def run_b(ids):
        on = 0
        for user_id in ids:
            on += get_evaluation_result(
                {**env_b, "identity": {"identifier": user_id, "key": f"bench_{user_id}"}})["flags"]["b"]["enabled"]
        return on

    def run_c(ids):
        on = 0
        for user_id in ids:
            context = {**env_c, "identity": {"identifier": user_id, "key": f"bench_{user_id}",
                                             "traits": {"country": "US", "plan": "premium"}}}
            on += get_evaluation_result(context)["flags"]["c"]["enabled"]
        return on

    return {"A": run_a, "B": run_b, "C": run_c}


# ---- UnleashClient ----------------------------------------------------------------------------

def unleash():
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    logging.getLogger("UnleashClient").setLevel(logging.ERROR)

    def rollout(percent):
        return {"name": "flexibleRollout",
                "parameters": {"rollout": str(percent), "stickiness": "userId", "groupId": "g"}}

    features = {"version": 1, "features": [
        {"name": "a", "enabled": True, "strategies": [{"name": "default"}]},
        {"name": "b", "enabled": True, "strategies": [rollout(50)]},
        {"name": "c", "enabled": True, "strategies": [dict(rollout(30), constraints=[
            {"contextName": "country", "operator": "IN", "values": ["US", "CA", "UK"]},
            {"contextName": "plan", "operator": "IN", "values": ["premium"]},
        ])]},
    ]}
    cache = FileCache("flagsite-bench", directory=tempfile.mkdtemp(prefix="unleash-bench-"))
    cache.bootstrap_from_dict(features)
    client = UnleashClient(url="http://localhost:1", app_name="flagsite-bench", cache=cache,
                           disable_metrics=True, disable_registration=True)
    is_enabled = client.is_enabled

    def run_a(ids):
        on = 0
        for user_id in ids:
            on += is_enabled("a", {"userId": user_id})
        return on

    def run_b(ids):
        on = 0
        for user_id in ids:
            on += is_enabled("b", {"userId": user_id})
        return on

    def run_c(ids):
        on = 0
        for user_id in ids:
            on += is_enabled("c", {"userId": user_id, "properties": {"country": "US", "plan": "premium"}})
        return on

    return {"A": run_a, "B": run_b, "C": run_c}


# ---- floor ------------------------------------------------------------------------------------

def floor():
    hash_ = mmh3.hash

    def make(flag):
        def run(ids):
            on = 0
            for user_id in ids:
                on += hash_(f"{flag}:{user_id}") % 100 < 50
            return on

        return run

    return {"A": make("a"), "B": make("b"), "C": make("c")}


# ---- --regex: RE2 against the backtracking re it replaced ------------------------------------------

REGEX_CASES = [  # (pattern, value)
    ("@example\\.com$", "jane.doe@example.com"),
    ("^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$", "jane.doe@example.com"),
    ("(iPhone|iPad).*OS (\\d+)_(\\d+)",
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"),
    ("(?i)googlebot|bingbot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    ("@example\\.com$", "x" * 4096),
    ("^\\d+$", "1" * 4095 + "x"),
]


def _python_re(pattern, case_insensitive=False):
    """The matcher before RE2: Python's re searched the first 4096 characters."""
    import re

    search = re.compile(pattern, re.IGNORECASE if case_insensitive else 0).search
    return lambda text: search(text[:4096]) is not None


def _per_call(function, args, rounds, calls=2000):
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        for _ in range(calls):
            function(*args)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def _snapshot(pattern, count, matcher):
    """count flags each with a `matches` rule, compiled with the given matcher."""
    from feature_flag_client.engine import regex_safety

    flags = [{"key": f"f{i}", "kind": "boolean", "enabled": True,
              "rules": [{"type": "custom", "field": "email", "operator": "matches", "value": pattern}]}
             for i in range(count)]
    saved = regex_safety.compile_search
    if matcher == "re":
        regex_safety.compile_search = _python_re
    try:
        return compile_snapshot(flags=flags, environment="bench", version=1)
    finally:
        regex_safety.compile_search = saved


def regex_main(rounds):
    from feature_flag_client.engine import regex_safety

    print(f"`matches`: microseconds per call, best of {rounds} rounds (Python {sys.version.split()[0]})")
    print(f"{'pattern':<42}{'value':>7}{'re':>10}{'re2':>10}{'re2/re':>9}")
    for pattern, value in REGEX_CASES:
        old, new = _python_re(pattern), regex_safety.compile_search(pattern)
        assert old(value) == new(value), pattern
        t_re = _per_call(old, (value,), rounds)
        t_re2 = _per_call(new, (value,), rounds)
        print(f"{pattern[:41]:<42}{len(value):>7}{t_re:>10.2f}{t_re2:>10.2f}{t_re2 / t_re:>8.1f}x")
    pattern, email = REGEX_CASES[1]
    print()
    print(f"snapshot.evaluate, rule `matches` {pattern!r} on {email!r}")
    print(f"{'':<42}{'':>7}{'re':>10}{'re2':>10}{'re2/re':>9}")
    for count in (1, 20):
        times = {}
        for matcher in ("re", "re2"):
            snapshot = _snapshot(pattern, count, matcher)
            keys = [f"f{i}" for i in range(count)]

            def bulk(user_id, snapshot=snapshot, keys=keys):
                context = {"email": email}
                return [snapshot.evaluate(key, user_id, context) for key in keys]

            assert all(result.enabled for result in bulk("u1"))
            times[matcher] = _per_call(bulk, ("u1",), rounds, calls=max(200, 2000 // count))
        label = "one flag" if count == 1 else f"{count}-flag bulk"
        print(f"{label:<42}{'':>7}{times['re']:>10.2f}{times['re2']:>10.2f}{times['re2'] / times['re']:>8.1f}x")


# ---- harness ----------------------------------------------------------------------------------

def measure(run, ids):
    gc.collect()
    start = time.perf_counter()
    on = run(ids)
    return time.perf_counter() - start, on


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="target time of one measurement")
    parser.add_argument("--regex", action="store_true", help="RE2 against re for `matches` rules (see above)")
    args = parser.parse_args()
    if args.regex:
        regex_main(args.rounds)
        return

    impls = {"ours": ours()}
    for name, factory in (("flagsmith", flagsmith), ("unleash", unleash)):
        try:
            impls[name] = factory()
        except ImportError as exc:
            print(f"skipping {name}: {exc} (pip install -e 'python-sdk[bench]')")
    impls["floor"] = floor()

    # Calibrate: enough calls for each measurement to take about --seconds.
    sizes = {}
    for name, runs in impls.items():
        for case, run in runs.items():
            elapsed, _ = measure(run, IDS[:5000])
            sizes[name, case] = max(5000, min(len(IDS), int(args.seconds * 5000 / max(elapsed, 1e-9))))

    best = {}
    share_on = {}
    for round_number in range(args.rounds):
        offset = (round_number * 7919) % 100_000  # a fresh slice of ids each round
        for case in CASES:
            for name, runs in impls.items():
                n = sizes[name, case]
                ids = IDS[offset:offset + n] if offset + n <= len(IDS) else IDS[:n]
                elapsed, on = measure(runs[case], ids)
                rate = n / elapsed
                if rate > best.get((name, case), 0):
                    best[name, case] = rate
                share_on[name, case] = on / n

    print()
    print(f"Evaluations per second, single thread, best of {args.rounds} interleaved rounds "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    names = list(impls)
    header = f"{'case':<5}" + "".join(f"{name:>14}" for name in names)
    header += "".join(f"{'ours/' + name:>16}" for name in names if name not in ("ours", "floor"))
    header += f"{'ours/floor':>12}"
    print(header)
    print("-" * len(header))
    for case in CASES:
        line = f"{case:<5}" + "".join(f"{best[name, case]:>14,.0f}" for name in names)
        line += "".join(f"{best['ours', case] / best[name, case]:>15.1f}x"
                        for name in names if name not in ("ours", "floor"))
        line += f"{best['ours', case] / best['floor', case]:>12.2f}"
        print(line)
    print()
    print("share of calls enabled: " + "; ".join(
        f"{case}: " + ", ".join(f"{name} {share_on[name, case]:.1%}" for name in names if name != "floor")
        for case in CASES))


if __name__ == "__main__":
    main()
