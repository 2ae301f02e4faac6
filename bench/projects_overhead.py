"""What projects (issue 18) cost evaluation: this checkout against another one (by default the
commit before projects, 090d89c, checked out beside it), alternately, same settings (prints numbers;
not a test; bench/results/projects-overhead.md holds a run).

bench/rest.py and bench/grpc.py each measure one checkout on ports of their own; this drives the
same loads (rest.py's wrk script and body, grpc.py's grpc.aio caller) against servers started from
both checkouts at once: granian ASGI (README command 1, the fast lane) and `manage.py grpcserver`,
each checkout on its own SQLite database seeded by its own bench/rest.py --seed (its own services
and migrations). Every round runs every target on both checkouts, the order flipped each round, so
drift on a shared machine hits both alike; each figure is the median of its rounds. Besides
requests/s and latency, the server's CPU time per request (its process tree, from /proc): the figure
least skewed by other load on the machine; and first, with no server at all, each checkout's own
bench/rest.py in_process loop (the cost of one request through that checkout's Django stack and fast
lane), also timed by the thread's CPU clock. This checkout also serves the same 20 flags from a
second, non-default project (keys of that project), to show a non-default project costs the same.

    .venv/bin/python bench/projects_overhead.py [--other ../pre-projects] [--rounds 5] [--duration 3]
                                                [--concurrency 1,50] [--workers 1] [--ports 3501,50551]
"""

import argparse
import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]  # bench/grpc.py vs grpcio
sys.path.insert(0, str(ROOT))
from bench import _common  # noqa: E402
from bench import grpc as grpc_bench  # noqa: E402
from bench import rest as rest_bench  # noqa: E402

PROJECT = "bench-b"  # the non-default project this checkout also serves
# (child, run in a checkout) bench/rest.py's in_process loop (the same WSGI environ, against that
# checkout's Django: WSGI handler, middleware with the fast lane, DRF; no server, no network), timed
# with the calling thread's CPU clock as well as the wall clock: on a shared, loaded machine the
# thread's CPU time does not count the time it waited for a core.
IN_PROCESS = """
import io, json, os, sys, time
sys.path.insert(0, os.getcwd())
from bench import _common
_common.django_setup(migrate=False)
from django.core.wsgi import get_wsgi_application

app = get_wsgi_application()
key = os.environ["BENCH_KEY"]

def call(path, body):
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "HTTP_HOST": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": f"Bearer {key}",
    }
    status = []
    chunks = app(environ, lambda s, h: status.append(s))
    b"".join(chunks)
    chunks.close()
    assert status[0].startswith("200"), (path, status)

targets = {name: (path, json.dumps(body).encode()) for name, (path, body) in json.loads(os.environ["BENCH_TARGETS"]).items()}
best = {name: [float("inf"), float("inf")] for name in targets}
for path, body in targets.values():
    call(path, body)
for _ in range(5):
    for name, (path, body) in targets.items():
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(200):
            call(path, body)
        best[name][0] = min(best[name][0], (time.perf_counter() - wall) / 200)
        best[name][1] = min(best[name][1], (time.thread_time() - cpu) / 200)
print(json.dumps(best))
"""


def seed_project():
    """(child, in this checkout) the 20 bench flags and SDK keys again, in project PROJECT."""
    _common.django_setup()
    from audit.actor import Actor
    from projects import scope
    from projects import services as project_services

    project_services.project_create(actor=Actor.system("bench"), key=PROJECT, name="Bench B")
    with scope.using(PROJECT):
        _common.create_flags("bench-flag", 20)
        return [_common.sdk_key("production", f"bench-b-{i}") for i in range(rest_bench.KEYS)]


def seed(checkout, database, *extra):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(checkout)}
    out = subprocess.run([sys.executable, *extra] if extra else [sys.executable, "bench/rest.py", "--seed"],
                         cwd=checkout, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", default=str(ROOT.parent / "pre-projects"), help="the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--workers", type=int, default=1, help="processes per server")
    parser.add_argument("--ports", default="3501,50551", help="first HTTP port, first gRPC port (3 of each used)")
    parser.add_argument("--in-process-rounds", type=int, default=5,
                        help="rounds of the in-process figure (each a child per checkout: best of 5 x 200 requests)")
    parser.add_argument("--seed-project", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_project:
        print(json.dumps(seed_project()))
        return

    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("FLAGS_RATE_LIMIT_MANAGEMENT", "off")
    os.environ.pop("REDIS_URL", None)
    tmp = Path(tempfile.mkdtemp(prefix="flagsite-projects-bench-"))
    other = Path(args.other).resolve()
    http, grpc_port = (int(p) for p in args.ports.split(","))
    sides = {}  # name: (checkout, database, SDK keys)
    for name, checkout in (("before", other), ("projects", ROOT)):
        database = tmp / f"{name}.sqlite3"
        sides[name] = (checkout, database, seed(checkout, database))
    checkout, database, _ = sides["projects"]
    sides["projects, 2nd project"] = (checkout, database,
                                      seed(checkout, database, "bench/projects_overhead.py", "--seed-project"))
    flag_ids = [f"bench-flag-{i:02d}" for i in range(20)]
    rest_targets = {"REST evaluate": ("/api/evaluate", {"flagId": "bench-flag-01", **rest_bench.BODY}),
                    "REST bulk (20)": ("/api/evaluate/bulk", {"flagIds": flag_ids, **rest_bench.BODY})}
    scripts = {}
    for name, (_, _, keys) in sides.items():
        for target, (_, body) in rest_targets.items():
            script = tmp / f"{len(scripts)}.lua"
            script.write_text(rest_bench.LUA.format(body=json.dumps(json.dumps(body)),
                                                    keys=",".join(json.dumps(key) for key in keys)))
            scripts[(name, target)] = str(script)

    in_process = {}  # (target, name): [us per request, one per round]
    for round_ in range(args.in_process_rounds):  # no server, no network: the least noisy figure
        for name in (list(sides) if round_ % 2 == 0 else list(reversed(sides))):
            checkout, database, keys = sides[name]
            env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(checkout),
                   "BENCH_KEY": keys[0], "BENCH_TARGETS": json.dumps(rest_targets)}
            out = subprocess.run([sys.executable, "-c", IN_PROCESS], cwd=checkout, env=env, capture_output=True,
                                 text=True, check=True).stdout
            for target, seconds in json.loads(out.strip().splitlines()[-1]).items():
                in_process.setdefault((target, name), []).append([value * 1e6 for value in seconds])
        print(f"in-process round {round_ + 1}/{args.in_process_rounds} done", file=sys.stderr)

    procs, ports = {}, {}
    try:
        started = {}
        for index, (name, (checkout, database, _)) in enumerate(sides.items()):
            if checkout in started:  # the 2nd project is served by the same processes
                ports[name] = ports[started[checkout]]
                procs[name] = procs[started[checkout]]
                continue
            env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "PYTHONPATH": str(checkout)}
            web, rpc = http + index, grpc_port + index
            commands = [_common.granian_command(web, args.workers, extra=["--log-level", "warning"]),
                        [sys.executable, "manage.py", "grpcserver", "--host", "127.0.0.1", "--port", str(rpc),
                         "--metrics-port", "0", "--workers", str(args.workers)]]
            procs[name] = [subprocess.Popen(command, cwd=checkout, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True)
                           for command in commands]
            ports[name] = (web, rpc)
            started[checkout] = name
        for name, (web, rpc) in ports.items():
            rest_bench.wait_ready(web)
            _common.wait_port(rpc)
        for name in sides:  # warm every worker's snapshot and key cache
            for target, (path, _) in rest_targets.items():
                rest_bench.wrk(f"http://127.0.0.1:{ports[name][0]}{path}", scripts[(name, target)], 4, 1)

        def measure(name, target, c):
            web_proc, rpc_proc = procs[name]
            web, rpc = ports[name]
            key = sides[name][2][0]
            if target.startswith("REST"):
                cpu = functools.partial(_common.cpu_seconds, web_proc.pid, tree=True)
                before = cpu()
                result = rest_bench.wrk(f"http://127.0.0.1:{web}{rest_targets[target][0]}", scripts[(name, target)],
                                        c, int(args.duration))
                result["cpu_us"] = (cpu() - before) / (result["rps"] * int(args.duration)) * 1e6
                return result
            cpu = functools.partial(_common.cpu_seconds, rpc_proc.pid, tree=True)
            return asyncio.run(grpc_bench.grpc_load(rpc, key, c, args.duration, cpu, channels=1))

        targets = [*rest_targets, "gRPC Evaluate"]
        concurrencies = [int(c) for c in args.concurrency.split(",")]
        runs = {}
        for round_ in range(args.rounds):
            for c in concurrencies:
                for target in targets:
                    order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                    for name in order:
                        runs.setdefault((target, c, name), []).append(measure(name, target, c))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for group in {id(p): p for p in procs.values()}.values():
            for proc in group:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def median(values):
        return sorted(values)[len(values) // 2]

    if in_process:
        print(f"\nIn process (bench/rest.py's in_process loop against each checkout: WSGI handler, fast lane, DRF; "
              f"no server): us per request, median of {args.in_process_rounds} alternating rounds, each the best "
              f"of 5 x 200, by the wall clock and by the calling thread's CPU clock")
        print("| target | server | wall us/req | rounds | vs before | CPU us/req | rounds | vs before |")
        print("|---|---|---:|---|---:|---:|---|---:|")
        for target in rest_targets:
            base = [median([r[i] for r in in_process[(target, "before")]]) for i in (0, 1)]
            for name in sides:
                cells = []
                for i in (0, 1):
                    values = [r[i] for r in in_process[(target, name)]]
                    cells.append(f"{median(values):.0f} | {min(values):.0f}-{max(values):.0f} | "
                                 f"{median(values) / base[i]:.2f}")
                print(f"| {target} | {name} | {' | '.join(cells)} |")
    print(f"\n{args.rounds} alternating rounds of {args.duration:g}s per figure (median shown), {os.cpu_count()} CPUs, "
          f"{args.workers} process(es) per server, SQLite + in-memory stores, granian ASGI and grpcserver.")
    print(f"before = {other.name} @ {_head(other)}, projects = {ROOT.name} @ {_head(ROOT)}")
    print("| target | c | server | req/s | p50 ms | p99 ms | server CPU us/req | req/s vs before | CPU vs before |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for target in targets:
        for c in concurrencies:
            base = runs[(target, c, "before")]
            base_rps, base_cpu = median([r["rps"] for r in base]), median([r["cpu_us"] for r in base])
            for name in sides:
                rounds = runs[(target, c, name)]
                rps, cpu = median([r["rps"] for r in rounds]), median([r["cpu_us"] for r in rounds])
                spread = f"{min(r['rps'] for r in rounds):.0f}-{max(r['rps'] for r in rounds):.0f}"
                print(f"| {target} | {c} | {name} | {rps:.0f} ({spread}) | {median([r['p50'] for r in rounds]):.2f} | "
                      f"{median([r['p99'] for r in rounds]):.2f} | {cpu:.0f} | {rps / base_rps:.2f} | "
                      f"{cpu / base_cpu:.2f} |")


def _head(checkout):
    return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    main()
