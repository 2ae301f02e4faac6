"""REST evaluation benchmark (prints numbers; not a test): the figures of issue 15's goals.

POST /api/evaluate and POST /api/evaluate/bulk (20 flags, every rule type) with wrk (Debian package
`wrk`), at concurrency 1 and 50, interleaved rounds, each figure the median of its rounds. Servers,
all in the same run:

- before: granian WSGI workers with FLAGS_FAST_LANE=off, every request through Django and DRF:
  the production figure issue 15 measured against Unleash (1.3x Unleash's /api/frontend at c=50,
  0.9x at c=1).
- asgi: the web server of README command 1 and production (bench/_common.granian_command: granian
  ASGI, the fast lane, flags/fastlane.py), with the stores this bench runs with.
- embedded: the same command on command 1's stores (SQLite, in-memory cache and channels), shown
  when this bench runs with DATABASE_URL + REDIS_URL (then `asgi` is the production layout).
- unleash: Unleash 7.5.1 OSS (npm `unleash-server`, pinned in bench/unleash/) on PostgreSQL with the
  same 20 flags as constraints, its `/api/frontend` (every enabled flag for one context, its
  answer to a bulk evaluation) for the same user: the yardstick of issue 15's goals. Needs Node 20+,
  npm (`npm ci` runs on first use) and PostgreSQL (the one in DATABASE_URL, else 127.0.0.1:5432).
- wsgi (on request): granian WSGI with the lane as a middleware. daphne (on request): the old command 1.

Rate limits stay on at the production default (FLAGS_RATE_LIMIT_EVALUATE 10000/s per key): each wrk
thread uses its own SDK key, so the load is up to four clients, none over its limit.

    .venv/bin/python bench/rest.py [--duration 5] [--rounds 3] [--workers 2] [--servers before,asgi,embedded,unleash]

Uses its own SQLite database under artifacts/ unless DATABASE_URL is set.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from bench import _common  # noqa: E402


KEYS = 4  # SDK keys, one per wrk thread


def setup_data():
    """Migrate and create 20 flags (every rule type) and KEYS SDK keys, through services."""
    _common.django_setup()
    _common.create_flags("bench-flag", 20)
    return [_common.sdk_key("production", f"bench-{i}") for i in range(KEYS)]


BODY = {"userId": "user-123", "context": {"country": "US", "device": "mobile", "plan": "premium",
                                          "appVersion": "1.4.0", "email": "a@example.com", "age": 30}}
LUA = """local keys = {{{keys}}}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("key", keys[(threads - 1) % #keys + 1])
end
function init(args)
  wrk.method = "POST"
  wrk.body = {body}
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end
"""


def in_process(key, targets, rounds=15, batch=200):
    """CPU cost per request through the whole Django stack (WSGI handler, middleware, DRF) with no
    network or server in between: the least noisy view of the ratios on a busy machine."""
    import io

    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()

    def call(path, body):
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
            "HTTP_AUTHORIZATION": f"Bearer {key}",
        }
        status = []
        chunks = app(environ, lambda s, h: status.append(s))
        b"".join(chunks)
        chunks.close()
        assert status[0].startswith("200"), (path, status)

    encoded = {name: (path, json.dumps(body).encode()) for name, (path, body) in targets.items()}
    best = dict.fromkeys(encoded, float("inf"))
    for path, body in encoded.values():
        call(path, body)
    for _ in range(rounds):
        for name, (path, body) in encoded.items():
            start = time.perf_counter()
            for _ in range(batch):
                call(path, body)
            best[name] = min(best[name], (time.perf_counter() - start) / batch)
    return best


def wait_ready(port, path="/api/health", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"server on :{port} did not become ready")


def wrk(url, script, concurrency, duration):
    out = subprocess.run(
        ["wrk", "-t", str(min(concurrency, 4)), "-c", str(concurrency), "-d", f"{duration}s", "--latency", "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def pct(p):
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50": pct(50), "p99": pct(99), "errors": int(errors.group(1)) if errors else 0}


def summarize(rounds):
    """Each figure the median of its rounds (a tail percentile of one 5 s run swings 2-5x on a
    shared 2-core machine: one hiccup of the host is 1% of a run), with the p99 spread beside it."""
    def median(values):
        return sorted(values)[len(values) // 2]

    return {"rps": median([r["rps"] for r in rounds]), "p50": median([r["p50"] for r in rounds]),
            "p99": median([r["p99"] for r in rounds]), "p99_range": (min(r["p99"] for r in rounds),
                                                                     max(r["p99"] for r in rounds)),
            "errors": sum(r["errors"] for r in rounds)}


UNLEASH = {50: 1.3, 1: 0.9}  # issue 15's measurement: "before" answered 1.3x Unleash at c=50, 0.9x at c=1
UNLEASH_DIR = ROOT / "bench" / "unleash"
UNLEASH_ADMIN = "*:*.bench-admin-token"  # the tokens bench/unleash/start.js creates
UNLEASH_FRONTEND = "default:development.bench-frontend-token"


def _rollout(percent=100, *constraints):
    return {"name": "flexibleRollout", "constraints": list(constraints),
            "parameters": {"rollout": str(percent), "stickiness": "default", "groupId": "bench"}}


def _constraint(field, operator, values):
    key = "values" if isinstance(values, list) else "value"
    return {"contextName": field, "operator": operator, key: values, "caseInsensitive": False, "inverted": False}


# _common.RULE_SETS, rule for rule, as Unleash strategies (any strategy on = on; the segment
# becomes its condition; "any" becomes two strategies).
UNLEASH_STRATEGIES = [
    [_rollout()],
    [_rollout(100, _constraint("country", "IN", ["US", "CA"]))],
    [_rollout(50)],
    [_rollout(100, _constraint("device", "IN", ["mobile", "desktop"]))],
    [_rollout(100, _constraint("userId", "NOT_IN", ["blocked-1", "blocked-2"]))],
    [_rollout(100, _constraint("plan", "IN", ["premium", "gold"]))],
    [_rollout(100, _constraint("appVersion", "SEMVER_GT", "1.2.0"))],
    [_rollout(100, _constraint("plan", "IN", ["premium"]))],
    [_rollout(100, _constraint("country", "IN", ["DE"])),
     _rollout(100, _constraint("email", "STR_ENDS_WITH", ["@example.com"]))],
    [_rollout(80, _constraint("age", "NUM_GTE", "18"))],
    [_rollout(100, _constraint("country", "NOT_IN", ["FR"]))],
]


def unleash_database():
    """A fresh PostgreSQL database for Unleash on the server of DATABASE_URL (else 127.0.0.1:5432),
    or None with the reason printed."""
    import psycopg

    base = os.environ.get("DATABASE_URL", "")
    base = base if base.startswith("postgres") else "postgres://postgres@127.0.0.1:5432/postgres"
    server, name = base.rsplit("/", 1)[0], "flagsite_bench_unleash"
    try:
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as error:
        print(f"unleash: skipped, no PostgreSQL at {server} ({str(error).strip()})")
        return None
    return f"{server}/{name}"


def unleash_command():
    """argv starting Unleash (installing it with `npm ci` on first use), or None with the reason printed."""
    if not (shutil.which("node") and shutil.which("npm")):
        print("unleash: skipped, needs Node 20+ and npm")
        return None
    if not (UNLEASH_DIR / "node_modules" / "unleash-server").exists():
        print("unleash: npm ci in bench/unleash (once)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel", "error"], cwd=UNLEASH_DIR, check=True)
    database = unleash_database()
    return database and ["node", str(UNLEASH_DIR / "start.js"), "{port}", database]


def unleash_seed(port, flag_ids):
    """The 20 flags through Unleash's admin API, on in `development`; waits until its frontend API
    answers for the bench user what its playground does."""
    def call(method, path, body=None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method=method, data=body and json.dumps(body).encode(),
            headers={"Authorization": UNLEASH_ADMIN, "Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=10).read()

    for i, flag in enumerate(flag_ids):
        call("POST", "/api/admin/projects/default/features", {"name": flag})
        for strategy in UNLEASH_STRATEGIES[i % len(UNLEASH_STRATEGIES)]:
            call("POST", f"/api/admin/projects/default/features/{flag}/environments/development/strategies", strategy)
        call("POST", f"/api/admin/projects/default/features/{flag}/environments/development/on")
    # The playground evaluates straight from its database; the frontend API from a cache it refreshes.
    context = {"userId": BODY["userId"], "properties": {k: str(v) for k, v in BODY["context"].items()}}
    playground = json.loads(call("POST", "/api/admin/playground", {
        "environment": "development", "projects": "*", "context": {"appName": "bench", **context}}))
    expected = sorted(f["name"] for f in playground["features"] if f["isEnabled"])
    deadline = time.time() + 30
    while time.time() < deadline:
        request = urllib.request.Request(unleash_url(port), headers={"Authorization": UNLEASH_FRONTEND})
        toggles = sorted(t["name"] for t in json.loads(urllib.request.urlopen(request, timeout=10).read())["toggles"])
        if toggles == expected:
            return
        time.sleep(0.5)
    raise RuntimeError(f"Unleash's frontend API answers {toggles}, its playground {expected}")


def unleash_url(port):
    """/api/frontend for BODY's user and attributes (query parameters, as its browser SDK sends them)."""
    from urllib.parse import urlencode

    query = {"userId": BODY["userId"], **{f"properties[{k}]": str(v) for k, v in BODY["context"].items()}}
    return f"http://127.0.0.1:{port}/api/frontend?{urlencode(query)}"


def seed_elsewhere(env):
    """Seed another database (a child process with that DATABASE_URL); its SDK keys."""
    out = subprocess.run([sys.executable, __file__, "--seed"], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is their median")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--servers", help="before, asgi, embedded, unleash, wsgi, daphne (default: before,asgi "
                        "+ embedded with DATABASE_URL and REDIS_URL, + unleash)")
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--seed", action="store_true", help=argparse.SUPPRESS)  # child of seed_elsewhere()
    args = parser.parse_args()
    if args.seed:
        print(json.dumps(setup_data()))
        return
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    production = os.environ.get("DATABASE_URL", "").startswith("postgres") and bool(os.environ.get("REDIS_URL"))
    wanted = (args.servers or ("before,asgi,embedded,unleash" if production else "before,asgi,unleash")).split(",")
    _common.use_own_database("bench")
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("FLAGS_RATE_LIMIT_MANAGEMENT", "off")
    keys = setup_data()
    embedded_env = None
    if "embedded" in wanted:
        db = _common.ARTIFACTS / "bench-embedded.sqlite3"
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        embedded_env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
        embedded_env.pop("REDIS_URL", None)
        embedded_keys = seed_elsewhere(embedded_env)

    tmp = Path(tempfile.mkdtemp(prefix="flagsite-bench-"))
    flag_ids = [f"bench-flag-{i:02d}" for i in range(20)]
    targets = {
        "evaluate": ("/api/evaluate", {"flagId": "bench-flag-01", **BODY}),
        "bulk (20)": ("/api/evaluate/bulk", {"flagIds": flag_ids, **BODY}),
    }

    def scripts_for(keyset):
        scripts = {}
        for name, (_, body) in targets.items():
            script = tmp / f"{len(list(tmp.iterdir()))}.lua"
            script.write_text(LUA.format(body=json.dumps(json.dumps(body)),
                                         keys=",".join(json.dumps(key) for key in keyset)))
            scripts[name] = str(script)
        return scripts

    cost = in_process(keys[0], targets)
    print("\nIn-process WSGI with the fast lane (one core, no network; best of 15 x 200 requests):")
    for name, seconds in cost.items():
        print(f"  {name:<11}{seconds * 1e6:7.0f} us/request  {1 / seconds:7.0f} req/s")

    wsgi = [str(BIN / "granian"), "--interface", "wsgi", "--workers", str(args.workers), "--blocking-threads", "1",
            "--respawn-failed-workers", "--host", "127.0.0.1", "--port", "{port}", "--no-ws", "--log-level", "warning",
            "flagsite.wsgi:application"]
    asgi = _common.granian_command("{port}", args.workers)
    asgi[-1:-1] = ["--log-level", "warning"]
    servers = {  # name: (command, environment, SDK keys)
        "before": (wsgi, {**os.environ, "FLAGS_FAST_LANE": "off"}, keys),
        "asgi": (asgi, os.environ, keys),
        "embedded": (asgi, embedded_env, embedded_keys if embedded_env else None),
        "wsgi": (wsgi, os.environ, keys),
        "daphne": ([str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "{port}", "flagsite.asgi:application"],
                   os.environ, keys),
    }
    if "unleash" in wanted:
        command = unleash_command()
        if command:
            servers["unleash"] = (command, {**os.environ, "NODE_ENV": "production"}, None)  # as its image runs
        else:
            wanted.remove("unleash")
    unleash_script = tmp / "unleash.lua"
    unleash_script.write_text(f'wrk.headers["Authorization"] = {json.dumps(UNLEASH_FRONTEND)}\n')
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results = {}
    for port, server in enumerate(wanted, start=8731):
        command, env, keyset = servers[server]
        if server == "unleash":  # the frontend API answers every flag: its bulk evaluation
            urls = {"bulk (20)": (unleash_url(port), str(unleash_script))}
        else:
            scripts = scripts_for(keyset)
            urls = {name: (f"http://127.0.0.1:{port}{path}", scripts[name]) for name, (path, _) in targets.items()}
        proc = subprocess.Popen([part.format(port=port) for part in command], cwd=ROOT, env=dict(env),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            if server == "unleash":
                wait_ready(port, "/health", timeout=120)  # its first start migrates its database
                unleash_seed(port, flag_ids)
            else:
                wait_ready(port)
            for url, script in urls.values():  # warm every worker's snapshot and key cache
                wrk(url, script, 4, 1)
            for c in concurrencies:
                runs = {name: [] for name in urls}
                for _ in range(args.rounds):  # interleaved rounds: drift and noise hit every target alike
                    for name, (url, script) in urls.items():
                        runs[name].append(wrk(url, script, c, args.duration))
                for name, rounds in runs.items():
                    results[(server, c, name)] = summarize(rounds)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # daphne may linger on open keep-alive sockets
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    stores = "PostgreSQL + Redis" if production else os.environ["DATABASE_URL"].split(":")[0] + " + in-memory"
    print(f"\nREST evaluation: wrk, each figure the median of {args.rounds} interleaved {args.duration}s runs, "
          f"{os.cpu_count()} CPUs, {args.workers} workers, stores {stores} (embedded: SQLite + in-memory)")
    print(f"{'server':<10}{'c':>4}  {'endpoint':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs before':>11}"
          f"{'non-2xx':>9}  p99 of the rounds")
    for (server, c, name), r in results.items():
        before = results.get(("before", c, name))
        versus = f"{r['rps'] / before['rps']:>10.1f}x" if before else f"{'':>11}"
        low, high = r["p99_range"]
        print(f"{server:<10}{c:>4}  {name:<11}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{versus}"
              f"{r['errors']:>9}  {low:.1f}-{high:.1f}")
    print_goals(results, concurrencies)


def print_goals(results, concurrencies):
    """Issue 15's goals, against Unleash measured in this run, else estimated from "before" (UNLEASH)."""
    def figure(server, c, name, key="rps"):
        hit = results.get((server, c, name))
        return hit[key] if hit else None

    measured = any(server == "unleash" for server, _, _ in results)
    print("\nGoals (issue 15), against Unleash's /api/frontend " + (
        "measured in this run:" if measured else "estimated as before / 1.3 at c=50, before / 0.9 at c=1:"))
    for c, goal in ((50, 4), (1, 2)):
        new, before = figure("asgi", c, "bulk (20)"), figure("before", c, "bulk (20)")
        unleash = figure("unleash", c, "bulk (20)") if measured else before and before / UNLEASH[c]
        if new and unleash:
            times = new / unleash
            print(f"  bulk (20), c={c}: {new:.0f} req/s = {times:.2f}x Unleash's {unleash:.0f}  (goal >= {goal}x)  "
                  f"{'met' if times >= goal else 'NOT met'}")
    p99 = figure("asgi", 50, "bulk (20)", "p99")
    unleash_p99 = figure("unleash", 50, "bulk (20)", "p99")
    if p99 is not None:
        limit = unleash_p99 / 3 if unleash_p99 else 20.0
        print(f"  bulk (20), c=50 p99: {p99:.1f} ms  (goal: a third of Unleash's "
              f"{f'{unleash_p99:.1f} ms' if unleash_p99 else '61-81 ms'}, <= {limit:.1f} ms)  "
              f"{'met' if p99 <= limit else 'NOT met'}")
    new, before = figure("asgi", 50, "evaluate"), figure("before", 50, "evaluate")
    if new and before:
        print(f"  evaluate, c=50: {new:.0f} req/s = {new / before:.2f}x before  (goal >= 3x)  "
              f"{'met' if new >= 3 * before else 'NOT met'}")
    for c in concurrencies:
        for name in ("evaluate", "bulk (20)"):
            embedded, production = figure("embedded", c, name), figure("asgi", c, name)
            if embedded and production:
                share = embedded / production
                print(f"  command 1 (embedded) vs production, {name}, c={c}: {share:.0%}  (goal >= 90%)  "
                      f"{'met' if share >= 0.9 else 'NOT met'}")


if __name__ == "__main__":
    main()
