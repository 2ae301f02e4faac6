"""Attacks against the production HTTP command while a steady client evaluates (prints numbers; 127.0.0.1 only).

Starts the production topology of README "Deployment" on free local ports over its own database:
the granian ASGI server (bench/_common.granian_command) behind the front proxy (deploy/nginx.conf,
Debian's nginx; --no-proxy attacks granian directly). A steady client evaluates at --rate
requests/s on /api/evaluate with a valid SDK key, and the attacks run one after another, each for
--duration seconds after a baseline with none:

  slow-body     50 sockets announce Content-Length: 10000 and send a few bytes (/api/evaluate with
                the SDK key, /admin/login/), reopened when dropped
  slow-header   50 sockets send part of their headers and stall, reopened when dropped
  invalid-keys  4 clients evaluating with a new invalid key on every request
  bulk          2 clients posting /api/evaluate/bulk with 150,000 flagIds (3.5 MB: over the body limit)
  bulk-max      2 clients posting /api/evaluate/bulk with FLAGS_MAX_BULK_FLAGS flagIds (the most one call
                may ask; the rate limit weighs each by its cost)
  worker-kill   SIGKILL of one granian worker at the start of the phase

Attackers run in their own processes. For each phase: the steady client's requests, success rate, p50 / p99 / max latency, and what the
attackers got back. Goal (issue 14): 100% success and p99 < 50 ms, except while a worker restarts.

    .venv/bin/python bench/attack.py [--duration 10] [--workers 2] [--rate 150] [--no-proxy] [--with-redis]

--with-redis uses DATABASE_URL and REDIS_URL from the environment (PostgreSQL and Redis);
otherwise an own SQLite database under artifacts/ and no Redis.
"""

import argparse
import collections
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
from bench import _common  # noqa: E402

import httpx  # noqa: E402

SLOW_SOCKETS = 50
ATTACKERS = 4
# Attackers connect from another loopback address: the failed-authentication block is per client
# address, and a real attacker is not the steady client's host (same address: the steady client
# would share the attacker's block wherever its key is not yet known good, e.g. a restarted worker).
ATTACKER_ADDRESS = "127.0.0.2"
KEY_GUESSER_ADDRESS = "127.0.0.3"  # blocked by the invalid-key flood: the other attacks come from elsewhere


class Steady(threading.Thread):
    """Evaluates at `rate` per second; each outcome (phase, ok, seconds) is kept."""

    def __init__(self, url, key, rate):
        super().__init__(daemon=True)
        self.url, self.key, self.interval = url, key, 1 / rate
        self.phase, self.results, self.stop = "warm-up", [], threading.Event()

    def run(self):
        with httpx.Client(base_url=self.url, timeout=5, headers={"Authorization": f"Bearer {self.key}"}) as client:
            next_at = time.monotonic()
            while not self.stop.is_set():
                started, phase = time.monotonic(), self.phase
                try:
                    response = client.post("/api/evaluate", json={"flagId": "attack-flag-00", "userId": "steady"})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.results.append((phase, ok, time.monotonic() - started))
                next_at = max(next_at + self.interval, time.monotonic() - 1)  # no catching up after a stall
                time.sleep(max(0.0, next_at - time.monotonic()))


def slow_sockets(port, key, stop, headers_only, outcomes):
    """SLOW_SOCKETS stalled requests held open until stop; a socket the server drops is reopened."""
    evaluate = f"POST /api/evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
    login = "POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if headers_only:
        requests = [evaluate + "Content-Type: appl", login + "Content-Ty"]
    else:
        requests = [evaluate + 'Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"flagId": "at',
                    login + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\nuser"]
    held = {}
    while not stop.is_set():
        for i in range(SLOW_SOCKETS):
            sock = held.get(i)
            if sock is not None:
                try:
                    sock.recv(4096, socket.MSG_DONTWAIT)  # data (a 408), b"" (closed) or a reset: dropped
                except BlockingIOError:
                    continue  # still held open by the server: the attack goes on
                except OSError:
                    pass
                sock.close()
                outcomes["dropped by the server"] += 1
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(ATTACKER_ADDRESS, 0))
                sock.sendall(requests[i % 2].encode())
                held[i] = sock
                outcomes["opened"] += 1
            except OSError:
                held.pop(i, None)
                outcomes["refused"] += 1
        stop.wait(0.5)
    for sock in held.values():
        sock.close()


def flood(url, body_for, path, stop, outcomes, headers_for, address=ATTACKER_ADDRESS):
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=url, timeout=30, transport=transport) as client:
        while not stop.is_set():
            try:
                response = client.post(path, content=body_for(), headers={"Content-Type": "application/json",
                                                                          **headers_for()})
                outcomes[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1


def run_attacker(attack, stop, results):
    """One attacker in its own process: the steady client's latency is then the server's, not a
    wait for the GIL behind the attackers' own Python work."""
    outcomes = collections.Counter()
    attack(stop, outcomes)
    results.put(dict(outcomes))


def kill_a_worker(granian_pid, outcomes):
    workers = sorted(int(p) for p in subprocess.run(["pgrep", "-P", str(granian_pid)], capture_output=True,
                                                    text=True).stdout.split())
    if workers:
        os.kill(workers[0], signal.SIGKILL)
        outcomes["workers killed"] += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--workers", type=int, default=2, help="granian workers")
    parser.add_argument("--rate", type=float, default=150.0, help="steady evaluations per second")
    parser.add_argument("--no-proxy", action="store_true", help="attack granian directly (no nginx in front)")
    parser.add_argument("--with-redis", action="store_true", help="DATABASE_URL and REDIS_URL from the environment")
    args = parser.parse_args()
    if args.with_redis:
        if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
            sys.exit("--with-redis needs DATABASE_URL and REDIS_URL")
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("REDIS_URL", None)
        _common.use_own_database("attack")
    use_proxy = not args.no_proxy
    if use_proxy and _common.nginx_binary() is None:
        sys.exit("nginx not found: apt-get install -y nginx-light (or --no-proxy)")
    os.environ.setdefault("DEBUG", "false")
    _common.django_setup()
    from django.conf import settings
    flags = _common.create_flags("attack-flag", 20)
    key = _common.sdk_key("production", "attack")
    attacker_key = _common.sdk_key("production", "attacker")  # its own key: per-key limits are not the steady client's

    _common.ARTIFACTS.mkdir(exist_ok=True)
    web_port, proxy_port = _common.free_port(), _common.free_port()
    env = {"ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING",
           "NUM_PROXIES": "1" if use_proxy else "0"}  # the client address is nginx's X-Forwarded-For entry
    servers = [_common.Server("granian", _common.granian_command(web_port, args.workers), env=env, port=web_port,
                              log=_common.ARTIFACTS / "attack-granian.log")]
    nginx_dir = tempfile.mkdtemp(prefix="flagsite-attack-nginx-")
    if use_proxy:
        servers.append(_common.Server("nginx", _common.nginx_command(nginx_dir, proxy_port, web_port), port=proxy_port,
                                      log=_common.ARTIFACTS / "attack-nginx.log"))
    port = proxy_port if use_proxy else web_port
    url = f"http://127.0.0.1:{port}"
    def bulk_body(count):
        return ('{"userId": "u", "flagIds": [' + ",".join(f'"{flags[i % 20]}-{i}"' for i in range(count)) + "]}").encode()

    oversize, most = bulk_body(150_000), bulk_body(settings.FLAGS_MAX_BULK_FLAGS)

    def evaluate_body():
        return b'{"flagId": "attack-flag-00", "userId": "attacker"}'

    phases = {
        "baseline": None,
        "slow-body": lambda stop, out: slow_sockets(port, key, stop, False, out),
        "slow-header": lambda stop, out: slow_sockets(port, key, stop, True, out),
        "invalid-keys": lambda stop, out: flood(url, evaluate_body, "/api/evaluate", stop, out,
                                                lambda: {"Authorization": f"Bearer sdk_production_{uuid.uuid4().hex}"},
                                                KEY_GUESSER_ADDRESS),
        "bulk": lambda stop, out: flood(url, lambda: oversize, "/api/evaluate/bulk", stop, out,
                                        lambda: {"Authorization": f"Bearer {attacker_key}"}),
        "bulk-max": lambda stop, out: flood(url, lambda: most, "/api/evaluate/bulk", stop, out,
                                            lambda: {"Authorization": f"Bearer {attacker_key}"}),
        "worker-kill": lambda stop, out: kill_a_worker(servers[0].pid, out),
    }
    attackers_per = {"slow-body": 1, "slow-header": 1, "invalid-keys": ATTACKERS, "bulk": 2, "bulk-max": 2,
                     "worker-kill": 1}
    steady = Steady(url, key, args.rate)
    report = []
    try:
        steady.start()
        time.sleep(2)  # warm every worker
        for name, attack in phases.items():
            steady.phase = name
            forked = multiprocessing.get_context("fork")  # the attacks are closures over this run
            stop, results, outcomes = forked.Event(), forked.Queue(), collections.Counter()
            attackers = [forked.Process(target=run_attacker, args=(attack, stop, results), daemon=True)
                         for _ in range(attackers_per.get(name, 0))] if attack else []
            for attacker in attackers:
                attacker.start()
            time.sleep(args.duration)
            stop.set()
            for _ in attackers:
                outcomes.update(results.get(timeout=35))
            for attacker in attackers:
                attacker.join(5)
            report.append((name, dict(outcomes), [s.alive() for s in servers]))
            steady.phase = f"{name} (after)"
            time.sleep(1)  # the attack's connections drain; not counted
    finally:
        steady.stop.set()
        steady.join(10)
        for server in reversed(servers):
            server.stop()

    front = "nginx (deploy/nginx.conf) -> " if use_proxy else ""
    print(f"\n{front}granian x{args.workers}, steady client {args.rate:g} evaluations/s, {args.duration:g} s per phase, "
          f"{os.cpu_count()} CPUs, database {os.environ['DATABASE_URL'].split(':')[0]}"
          f"{', Redis' if os.environ.get('REDIS_URL') else ''}")
    print(f"{'phase':<14}{'requests':>9}{'success':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  attackers got")
    for name, outcomes, alive in report:
        rows = [(ok, seconds) for phase, ok, seconds in steady.results if phase == name]
        latencies = sorted(seconds * 1000 for _, seconds in rows)
        success = sum(ok for ok, _ in rows) / len(rows) if rows else 0.0
        p50, p99 = _common.percentile(latencies, 0.5), _common.percentile(latencies, 0.99)
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())) or "-"
        dead = "" if all(alive) else "  SERVER DOWN"
        print(f"{name:<14}{len(rows):>9}{success:>9.1%}{p50 or 0:>9.1f}{p99 or 0:>9.1f}"
              f"{(latencies[-1] if latencies else 0):>9.1f}  {shown}{dead}")
    print("goal: 100% success and p99 < 50 ms in every phase but worker-kill")


if __name__ == "__main__":
    main()
