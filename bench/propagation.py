"""Kill-switch propagation to 1,000 WebSocket clients, and SDK local-mode evaluation speed.

    .venv/bin/python bench/propagation.py [--clients 1000] [--kills 10] [--workers 1]

Starts the web server (granian ASGI, the production command; --workers, default 1) on a free port
over a throwaway SQLite database (or DATABASE_URL / REDIS_URL when set), with the per-key
WebSocket cap lifted (FLAGS_WS_MAX_CONNECTIONS_PER_KEY=0: every client uses the one SDK key, and
the default cap of 500 would close the rest with 4429), opens N WebSocket clients in this one
asyncio process, then kills and restores a flag through
the REST API `--kills` times. For each kill it records, at every client, the time from the
kill-switch request returning to the `killed` event arriving (negative: the event arrived before
the HTTP response did). Prints p50 / p99 / max over all kills and clients.

Then: SDK local-mode evaluations per second (LocalEvaluator, which counts every evaluation) beside
the bare engine (compile_snapshot) on the same snapshot, interleaved rounds, best of each.
"""

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds grpc.py: keep the directory off the path so `import grpc` finds grpcio
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench import _common  # noqa: E402


def setup_database():
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix='flagsite-bench-')}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from audit.actor import Actor
    from flags import services
    from flags.models import Environment, Flag

    call_command("migrate", verbosity=0)
    actor = Actor.system("bench")
    if not Flag.objects.filter(key="bench-kill").exists():
        services.flag_create(actor=actor, key="bench-kill", name="Bench kill",
                             states={env.key: {"enabled": True, "rules": []} for env in Environment.objects.all()})
    production = Environment.objects.get(key="production")
    sdk_key = services.api_key_create(actor=actor, name="bench", kind="sdk", environment=production)[1]
    admin, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_superuser": True})
    token = services.api_key_create(actor=actor, name="bench", kind="management", user=admin)[1]
    return sdk_key, token


def start_server(port, workers):
    """granian ASGI (bench._common.granian_command) with every client allowed on the one key."""
    env = {"FLAGS_WS_PING_SECONDS": "300", "FLAGS_WS_MAX_CONNECTIONS_PER_KEY": "0"}
    return _common.Server("web", _common.granian_command(port, workers, extra=["--log-level", "warning"]),
                          env=env, port=port, timeout=60)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def propagation(port, sdk_key, token, clients, kills):
    import httpx
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/ws?key={sdk_key}"
    received = {}  # (kill number, client) -> perf_counter at receipt
    expected_action = {"value": None, "round": 0}
    arrived = asyncio.Event()
    counts = {"n": 0}

    async def client(number, ready):
        async with connect(url, open_timeout=60, ping_interval=None, max_queue=None) as ws:
            await ws.recv()  # hello
            ready.release()
            async for raw in ws:
                if '"flag.changed"' not in raw:
                    continue
                action = expected_action["value"]
                if action and f'"action":"{action}"' in raw:
                    received[(expected_action["round"], action, number)] = time.perf_counter()
                    counts["n"] += 1
                    if counts["n"] == clients:
                        arrived.set()

    ready = asyncio.Semaphore(0)
    tasks = []
    started = time.perf_counter()
    for batch in range(0, clients, 50):  # connect in waves, as a fleet of services would
        size = min(50, clients - batch)
        tasks.extend(asyncio.create_task(client(number, ready)) for number in range(batch, batch + size))
        for _ in range(size):
            await asyncio.wait_for(ready.acquire(), timeout=120)
    print(f"{clients} WebSocket clients connected in {time.perf_counter() - started:.1f} s")

    latencies = {"returned": [], "sent": []}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as http:
        for kill in range(kills):
            for action, path, body in (("killed", "kill-switch", {"reason": "bench"}), ("restored", "restore", {})):
                expected_action.update(value=action, round=kill)
                counts["n"] = 0
                arrived.clear()
                sent = time.perf_counter()
                response = await http.post(f"/api/flags/bench-kill/{path}", json=body)
                returned = time.perf_counter()
                response.raise_for_status()
                await asyncio.wait_for(arrived.wait(), timeout=30)
                if action == "killed":
                    for n in range(clients):
                        latencies["returned"].append((received[(kill, action, n)] - returned) * 1000)
                        latencies["sent"].append((received[(kill, action, n)] - sent) * 1000)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def local_mode_speed(rounds=5, calls=200_000):
    from feature_flag_client.engine import compile_snapshot
    from feature_flag_client.local import LocalEvaluator

    payload = {"environment": "production", "version": 1, "segments": {}, "flags": [
        {"key": "rollout", "enabled": True,
         "rules": [{"type": "percentage", "operator": "less_than", "value": 50}]},
        {"key": "targeted", "enabled": True,
         "rules": [{"type": "geo", "operator": "in", "value": ["US", "CA", "GB"]},
                   {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}]},
    ]}
    bare = compile_snapshot(**payload).evaluate
    local = LocalEvaluator(payload).evaluate
    best = {"bare engine": 0.0, "SDK local mode": 0.0}
    for _ in range(rounds):
        for name, evaluate in (("bare engine", bare), ("SDK local mode", local)):
            started = time.perf_counter()
            for i in range(calls):
                evaluate("rollout", f"user-{i}", {"country": "US", "plan": "premium"})
            best[name] = max(best[name], calls / (time.perf_counter() - started))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="granian workers (default 1)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 sockets on each side

    sdk_key, token = setup_database()
    port = _common.free_port()
    server = start_server(port, args.workers)
    try:
        latencies = asyncio.run(propagation(port, sdk_key, token, args.clients, args.kills))
    finally:
        server.stop()
    print(f"\nkilled event at each client ({args.clients} clients x {args.kills} kills = "
          f"{len(latencies['sent'])} deliveries), measured from the kill-switch request being")
    for start, values in (("returned", latencies["returned"]), ("sent", latencies["sent"])):
        print(f"  {start:8s}  p50 {statistics.median(values):7.1f} ms   p99 {percentile(values, 0.99):7.1f} ms"
              f"   max {max(values):7.1f} ms")
    print("  (goal: p99 < 250 ms; negative = the event arrived before the HTTP response)")

    speed = local_mode_speed()
    print("\nevaluations/s, single thread, 50% rollout, best of 5 interleaved rounds")
    for name, value in speed.items():
        print(f"  {name:15s} {value:12,.0f}")
    print(f"  SDK local mode / bare engine: {speed['SDK local mode'] / speed['bare engine']:.2f} (goal >= 0.90)")


if __name__ == "__main__":
    main()
