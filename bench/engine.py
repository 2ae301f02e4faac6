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

    .venv/bin/python bench/engine.py --explain [--baseline main] [--rounds 5]

Explain mode must cost the normal path nothing: snapshot.evaluate of this checkout's engine against
the engine at git ref --baseline (extracted from git into a temporary package and imported side by
side), interleaved round by round in this one process, best round kept, as the ratio after/before.
Cases A-C above plus D (geo by context.ip and device by context.userAgent, the rule readers explain
shares) and E (a segment and an `any`), then the cost of one snapshot.explain for comparison.
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

def ours(compile_snapshot=compile_snapshot):
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


# ---- --explain: the normal path before and after explain mode ------------------------------------

UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
EXPLAIN_FLAGS = [
    {"key": "d", "kind": "boolean", "enabled": True, "rules": [
        {"type": "geo", "operator": "in", "value": ["US", "CA", "GB"]},
        {"type": "device", "operator": "in", "value": ["mobile", "tablet"]},
    ]},
    {"key": "e", "kind": "boolean", "enabled": True, "rules": [
        {"type": "segment", "operator": "in", "value": ["premium"]},
        {"type": "any", "rules": [{"type": "custom", "field": "age", "operator": "gte", "value": 18},
                                  {"type": "user", "operator": "in", "value": ["vip-1", "vip-2"]}]},
    ]},
]
EXPLAIN_CASES = {  # case -> (flag, context)
    "D": ("d", {"ip": "8.8.8.8", "userAgent": UA}),
    "E": ("e", {"plan": "premium", "age": 30}),
}


def baseline_engine(ref):
    """The engine package as it was at a git ref, imported under another name (engine_<sha>)."""
    import importlib
    import io
    import subprocess
    import tarfile

    root = Path(__file__).resolve().parent.parent
    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=root, check=True, capture_output=True,
                         text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", ref, "python-sdk/feature_flag_client/engine"], cwd=root,
                             check=True, capture_output=True).stdout
    target = Path(tempfile.mkdtemp(prefix="engine-baseline-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    name = f"engine_{sha}"
    (target / "python-sdk/feature_flag_client/engine").rename(target / name)
    sys.path.insert(0, str(target))
    return importlib.import_module(name), sha


def _explain_runs(compile):
    runs = ours(compile)
    snapshot = compile(flags=EXPLAIN_FLAGS, segments={"premium": {"plan": "premium"}}, environment="bench",
                       version=1)
    evaluate = snapshot.evaluate
    for case, (flag, context) in EXPLAIN_CASES.items():
        def run(ids, flag=flag, context=context):
            on = 0
            for user_id in ids:
                on += evaluate(flag, user_id, dict(context)).enabled
            return on

        runs[case] = run
    return runs, snapshot


def _bytecode(compiled, seen=None):
    """The bytecode of a compiled flag and of every function its closures reach, in order."""
    seen = set() if seen is None else seen
    found = []
    stack = [compiled]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if callable(item) and hasattr(item, "__code__"):
            found.append(item.__code__.co_code)
            stack.extend(cell.cell_contents for cell in item.__closure__ or () if _filled(cell))
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif hasattr(item, "choose"):  # a variant plan
            stack.append(item.choose)
    return found


def _filled(cell):
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def explain_main(rounds, seconds, ref):
    from feature_flag_client import engine as current

    before_engine, sha = baseline_engine(ref)
    impls = {"before": _explain_runs(before_engine.compile_snapshot)[0]}
    impls["after"], snapshot = _explain_runs(current.compile_snapshot)
    same = []
    for flags, segments in ((EXPLAIN_FLAGS, {"premium": {"plan": "premium"}}), (None, None)):
        pair = []
        for engine in (before_engine, current):
            if flags is None:  # cases A-C: the flags ours() compiles
                from types import SimpleNamespace

                captured = SimpleNamespace()

                def capture(**kwargs):
                    captured.snapshot = engine.compile_snapshot(**kwargs)
                    return captured.snapshot

                ours(capture)
                pair.append(captured.snapshot)
            else:
                pair.append(engine.compile_snapshot(flags=flags, segments=segments, environment="b", version=1))
        same += [key for key in pair[1].table if _bytecode(pair[0].table[key]) == _bytecode(pair[1].table[key])]
    cases = list(impls["after"])
    sizes = {}
    for case in cases:
        elapsed, _ = measure(impls["after"][case], IDS[:5000])
        sizes[case] = max(5000, min(len(IDS), int(seconds * 5000 / max(elapsed, 1e-9))))
    best, share = {}, {}
    for round_number in range(rounds):
        offset = (round_number * 7919) % 100_000
        for case in cases:
            order = ("before", "after") if round_number % 2 == 0 else ("after", "before")
            for name in order:
                ids = IDS[offset:offset + sizes[case]]
                elapsed, on = measure(impls[name][case], ids)
                best[name, case] = max(best.get((name, case), 0), len(ids) / elapsed)
                share[name, case] = on / len(ids)
    print(f"snapshot.evaluate, evaluations per second, best of {rounds} interleaved rounds "
          f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"before: the engine at {ref} ({sha}); after: this checkout's (explain mode)")
    print(f"{'case':<5}{'before':>14}{'after':>14}{'after/before':>14}{'on (b/a)':>16}")
    for case in cases:
        ratio = best["after", case] / best["before", case]
        print(f"{case:<5}{best['before', case]:>14,.0f}{best['after', case]:>14,.0f}{ratio:>13.3f}x"
              f"{share['before', case]:>8.1%}/{share['after', case]:.1%}")
    print(f"flags whose compiled evaluation (the closure and every function it reaches) is bytecode-identical "
          f"before and after: {', '.join(sorted(same))} of {', '.join(sorted(k.lower() for k in cases))}")
    print()
    for flag, context in (("e", {"plan": "premium", "age": 30}), ("d", {"ip": "8.8.8.8", "userAgent": UA})):
        per_explain = _per_call(snapshot.explain, (flag, "user-1", context), rounds, calls=500)
        per_evaluate = _per_call(snapshot.evaluate, (flag, "user-1", context), rounds, calls=20000)
        print(f"one snapshot.explain of flag {flag}: {per_explain:.1f} us "
              f"({per_explain / per_evaluate:.0f}x one evaluate, {per_evaluate:.2f} us)")


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
    parser.add_argument("--explain", action="store_true", help="the normal path before/after explain mode")
    parser.add_argument("--baseline", default="main", help="git ref of the engine before (--explain)")
    args = parser.parse_args()
    if args.explain:
        explain_main(args.rounds, args.seconds, args.baseline)
        return
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
