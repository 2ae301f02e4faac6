"""Edge relay benchmark (prints numbers; not a test): the figures of issue 21's goals, same run.

    .venv/bin/python bench/relay.py [--duration 4] [--rounds 3] [--concurrency 16] [--changes 100]

Starts a primary (granian ASGI, the production web command) over its own SQLite database under
artifacts/ (or DATABASE_URL / REDIS_URL when set), relay A (`manage.py relay`, following the
primary) and relay B (following relay A: a chain), then:

- throughput: POST /api/evaluate and /api/evaluate/bulk (20 flags, every rule type) with wrk on the
  primary and on relay A, interleaved rounds, each figure the median of its rounds; the relay's
  figure as a ratio of the primary's (goal: >= 95%). Each wrk thread uses its own SDK key.
- propagation: --changes toggles of one flag through the primary's REST API; for each, the time
  to the flag.changed event at a WebSocket client of the primary, of relay A and of relay B, from
  the toggle's HTTP answer (negative: the event came first) and from its request (the write
  included: the goal's figure). p50 / p99 / max (goal: relay p99 < 100 ms).
- RSS of each relay (its process tree: granian and its worker; with --grpc-port the command too).
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds grpc.py: keep the directory off the path so `import grpc` finds grpcio
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench import _common  # noqa: E402
from bench.rest import BODY, LUA, wrk  # noqa: E402

KEYS = 4


def setup_data():
    _common.use_own_database("relay")
    _common.django_setup()
    from audit.actor import Actor
    from flags import services

    flags = _common.create_flags("bench-flag", 20)
    keys = [_common.sdk_key("production", f"bench-{i}") for i in range(KEYS)]
    relay_token = services.api_key_create(actor=Actor.system("bench"), name="bench relay", kind="relay",
                                          relay_environments=["production"])[1]
    return flags, keys, relay_token, _common.management_token()


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as answer:
            return json.loads(answer.read())
    except Exception:
        return {}


def start_relay(name, upstream_port, port, token, logs):
    env = {"FLAGS_RELAY": f"http://127.0.0.1:{upstream_port}", "FLAGS_RELAY_TOKEN": token,
           "FLAGS_WS_PING_SECONDS": "300", "FLAGS_WS_MAX_CONNECTIONS_PER_KEY": "0"}
    server = _common.Server(name, [sys.executable, "manage.py", "relay", "--upstream", env["FLAGS_RELAY"],
                                   "--host", "127.0.0.1", "--port", str(port)],
                            env=env, port=port, log=logs / f"{name}.log", timeout=90)
    deadline = time.monotonic() + 60
    while health(port).get("status") != "ok":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not sync with its upstream (see {logs}/{name}.log)")
        time.sleep(0.2)
    return server


def throughput(ports, keys, flags, duration, rounds, concurrency, tmp):
    bodies = {"evaluate": ("/api/evaluate", {"flagId": flags[1], **BODY}),
              "bulk-20": ("/api/evaluate/bulk", {"flagIds": flags, **BODY})}
    scripts = {}
    for name, (_path, body) in bodies.items():
        script = tmp / f"{name}.lua"
        script.write_text(LUA.format(body=json.dumps(json.dumps(body)),
                                     keys=", ".join(json.dumps(key) for key in keys)))
        scripts[name] = str(script)
    results = {name: {server: [] for server in ports} for name in bodies}
    for _round in range(rounds):
        for name, (path, _body) in bodies.items():
            for server, port in ports.items():  # interleaved: a slow moment of the host hits both
                results[name][server].append(wrk(f"http://127.0.0.1:{port}{path}", scripts[name], concurrency,
                                                 duration))
    return {name: {server: {"rps": statistics.median(r["rps"] for r in runs),
                            "p99": statistics.median(r["p99"] for r in runs),
                            "errors": sum(r["errors"] for r in runs)}
                   for server, runs in by_server.items()} for name, by_server in results.items()}


class Listener:
    """A WebSocket client in a thread, noting when each version of the flag arrives."""

    def __init__(self, port, key, flag):
        from websockets.sync.client import connect

        self.arrivals = []  # perf_counter of each flag.changed of the flag, in order
        self.flag = flag
        self._connection = connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {key}"},
                                   open_timeout=10)
        self.ws = self._connection.__enter__()
        json.loads(self.ws.recv(timeout=10))  # hello
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for text in self.ws:
                message = json.loads(text)
                if message.get("type") == "flag.changed" and message["flag"]["key"] == self.flag:
                    self.arrivals.append(time.perf_counter())
        except Exception:
            pass

    def close(self):
        self._connection.__exit__(None, None, None)


def propagation(ports, key, token, flag, changes):
    import httpx

    listeners = {name: Listener(port, key, flag) for name, port in ports.items()}
    delays = {name: [] for name in ports}
    missing = {name: 0 for name in ports}
    with httpx.Client(base_url=f"http://127.0.0.1:{ports['primary']}",
                      headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        for i in range(changes):
            sent = time.perf_counter()
            answer = client.patch(f"/api/flags/{flag}/toggle?environment=production", json={"enabled": i % 2 == 1})
            answered = time.perf_counter()
            answer.raise_for_status()
            deadline = answered + 2.0
            for name, listener in listeners.items():  # change i is each client's event i
                while len(listener.arrivals) <= i and time.perf_counter() < deadline:
                    time.sleep(0.0005)
                if len(listener.arrivals) > i:
                    delays[name].append(((listener.arrivals[i] - answered) * 1000, (listener.arrivals[i] - sent) * 1000))
                else:
                    missing[name] += 1
                    listener.arrivals.append(float("inf"))  # keep event i aligned with change i
            time.sleep(0.02)
    for listener in listeners.values():
        listener.close()
    return delays, missing


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()

    flags, keys, relay_token, token = setup_data()
    tmp = Path(tempfile.mkdtemp(prefix="flagsite-relay-bench-"))
    ports = {name: _common.free_port() for name in ("primary", "relay A", "relay B")}
    servers = []
    try:
        servers.append(_common.Server("primary", _common.granian_command(ports["primary"], 1,
                                                                         extra=["--log-level", "warning"]),
                                      env={"FLAGS_WS_PING_SECONDS": "300", "FLAGS_WS_MAX_CONNECTIONS_PER_KEY": "0"},
                                      port=ports["primary"], log=tmp / "primary.log", timeout=90))
        servers.append(start_relay("relay-a", ports["primary"], ports["relay A"], relay_token, tmp))
        servers.append(start_relay("relay-b", ports["relay A"], ports["relay B"], relay_token, tmp))
        print(f"primary :{ports['primary']}, relay A :{ports['relay A']} (of the primary), "
              f"relay B :{ports['relay B']} (of relay A); logs in {tmp}")

        figures = throughput({"primary": ports["primary"], "relay A": ports["relay A"]}, keys, flags,
                             args.duration, args.rounds, args.concurrency, tmp)
        print(f"\nthroughput (wrk -c {args.concurrency}, {args.rounds} x {args.duration} s interleaved, medians)")
        for name, by_server in figures.items():
            primary, relay = by_server["primary"], by_server["relay A"]
            ratio = relay["rps"] / primary["rps"] if primary["rps"] else 0.0
            print(f"  {name:9s} primary {primary['rps']:8.0f} req/s (p99 {primary['p99']:.1f} ms)   "
                  f"relay {relay['rps']:8.0f} req/s (p99 {relay['p99']:.1f} ms)   relay/primary {ratio:6.1%}  "
                  f"{'OK' if ratio >= 0.95 else 'below'} goal >= 95%"
                  + (f"   non-2xx: {primary['errors']}/{relay['errors']}" if primary["errors"] or relay["errors"] else ""))

        delays, missing = propagation({"primary": ports["primary"], "relay A": ports["relay A"],
                                       "relay B": ports["relay B"]}, keys[0], token, flags[0], args.changes)
        print(f"\npropagation: change on the primary -> flag.changed at a WS client ({args.changes} changes; from "
              "the toggle's HTTP answer, and from its request, which includes the write itself)")
        for name, values in delays.items():
            if not values:
                print(f"  {name:8s} no events ({missing[name]} missing)")
                continue
            answered, sent = sorted(v[0] for v in values), sorted(v[1] for v in values)
            p99 = _common.percentile(sent, 0.99)
            goal = "" if name == "primary" else f"   {'OK' if p99 < 100 else 'above'} goal p99 < 100 ms"
            print(f"  {name:8s} from answer p50 {_common.percentile(answered, 0.5):6.1f} ms p99 "
                  f"{_common.percentile(answered, 0.99):6.1f} ms   from request p50 {_common.percentile(sent, 0.5):6.1f} ms "
                  f"p99 {p99:6.1f} ms max {sent[-1]:6.1f} ms   missing {missing[name]}{goal}")

        print("\nRSS per relay (process tree: granian and its worker; the command execs granian)")
        for server in servers[1:]:
            print(f"  {server.name:8s} {_common.rss_bytes(server.pid, tree=True) / 2**20:6.1f} MiB")
        print(f"  primary  {_common.rss_bytes(servers[0].pid, tree=True) / 2**20:6.1f} MiB (for comparison)")
    finally:
        for server in reversed(servers):
            server.stop()


if __name__ == "__main__":
    main()
