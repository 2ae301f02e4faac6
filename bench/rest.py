"""REST evaluation benchmark (prints numbers; not a test).

Measures POST /api/evaluate and POST /api/evaluate/bulk (20 flags) beside a bare DRF APIView JSON
endpoint (/api/bench/bare, routed only with FLAGS_BENCH_VIEWS=1) on the same server in the same
run, at concurrency 1 and 50, under daphne (the embedded ASGI server) and granian (WSGI workers,
the production HTTP path; gunicorn's sync workers on request, as the comparison). Load
generator: wrk (Debian package `wrk`) with a Lua script per body.

    .venv/bin/python bench/rest.py [--duration 5] [--rounds 5] [--workers N] [--servers daphne,granian,gunicorn]

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


def setup_data():
    """Migrate and create 20 flags (every rule type) and an SDK key, through services."""
    _common.django_setup()
    _common.create_flags("bench-flag", 20)
    return _common.sdk_key("production", "bench")


BODY = {"userId": "user-123", "context": {"country": "US", "device": "mobile", "plan": "premium",
                                          "appVersion": "1.4.0", "email": "a@example.com", "age": 30}}
LUA = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
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


def wait_ready(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; each figure is their median")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--servers", default="daphne,granian", help="daphne, granian, gunicorn")
    parser.add_argument("--concurrency", default="1,50")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    _common.use_own_database("bench")
    os.environ["FLAGS_BENCH_VIEWS"] = "1"
    # measure the endpoints, not the limiter refusing one key's load (a production default)
    os.environ.setdefault("FLAGS_RATE_LIMIT_EVALUATE", "off")
    os.environ.setdefault("FLAGS_RATE_LIMIT_MANAGEMENT", "off")
    os.environ.setdefault("DEBUG", "false")
    key = setup_data()

    tmp = Path(tempfile.mkdtemp(prefix="flagsite-bench-"))
    flag_ids = [f"bench-flag-{i:02d}" for i in range(20)]
    targets = {
        "bare DRF": ("/api/bench/bare", {"flagId": "bench-flag-01", **BODY}),
        "evaluate": ("/api/evaluate", {"flagId": "bench-flag-01", **BODY}),
        "bulk (20)": ("/api/evaluate/bulk", {"flagIds": flag_ids, **BODY}),
    }
    scripts = {}
    for name, (_, body) in targets.items():
        script = tmp / f"{len(scripts)}.lua"
        script.write_text(LUA.format(body=json.dumps(json.dumps(body)), key=key))
        scripts[name] = str(script)

    cost = in_process(key, targets)
    print("\nIn-process WSGI (one core, no network; best of 15 x 200 requests):")
    for name, seconds in cost.items():
        print(f"  {name:<11}{seconds * 1e6:7.0f} us/request  {1 / seconds:7.0f} req/s  "
              f"{cost['bare DRF'] / seconds:5.0%} of bare DRF")

    servers = {
        "daphne": [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", "{port}", "flagsite.asgi:application"],
        # production (README "Deployment"): granian WSGI workers, one blocking thread each (FIFO)
        "granian": [str(BIN / "granian"), "--interface", "wsgi", "--workers", str(args.workers), "--blocking-threads", "1",
                    "--respawn-failed-workers",
                    "--host", "127.0.0.1", "--port", "{port}", "--no-ws", "--log-level", "warning", "flagsite.wsgi:application"],
        # the one web process (README command 1 and production): granian ASGI, the fast lane ahead of Django
        "asgi": [str(BIN / "granian"), "--interface", "asgi", "--workers", str(args.workers), "--respawn-failed-workers",
                 "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "flagsite.asgi:application"],
        # the comparison that chose granian: sync workers close the connection after each response
        "gunicorn": [str(BIN / "gunicorn"), "-w", str(args.workers), "-b", "127.0.0.1:{port}",
                     "--log-level", "warning", "flagsite.wsgi:application"],
    }
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results = {}
    for port, server in enumerate(args.servers.split(","), start=8731):
        command = [part.format(port=port) for part in servers[server]]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_ready(port)
            for name, (path, _) in targets.items():  # warm every worker's snapshot and key cache
                wrk(f"http://127.0.0.1:{port}{path}", scripts[name], 4, 1)
            for c in concurrencies:
                runs = {name: [] for name in targets}
                for _ in range(args.rounds):  # interleaved rounds: drift and noise hit every target alike
                    for name, (path, _) in targets.items():
                        runs[name].append(wrk(f"http://127.0.0.1:{port}{path}", scripts[name], c, args.duration))
                for name, rounds in runs.items():
                    results[(server, c, name)] = summarize(rounds)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # daphne may linger on open keep-alive sockets
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    print(f"\nREST evaluation benchmark: wrk, each figure the median of {args.rounds} interleaved {args.duration}s runs, {os.cpu_count()} CPUs, "
          f"database {os.environ['DATABASE_URL'].split(':')[0]}")
    print(f"{'server':<13}{'c':>4}  {'endpoint':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}{'non-2xx':>9}"
          f"  p99 of the rounds")
    for (server, c, name), r in results.items():
        bare = results[(server, c, "bare DRF")]["rps"]
        shown = server if server == "daphne" else f"{server} x{args.workers}"
        low, high = r["p99_range"]
        print(f"{shown:<13}{c:>4}  {name:<11}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
              f"{r['rps'] / bare:>8.0%}{r['errors']:>9}  {low:.1f}-{high:.1f}")
    print("goals: evaluate >= 80% and bulk >= 70% of bare DRF; p99 < 25 ms at c=50")


if __name__ == "__main__":
    main()
