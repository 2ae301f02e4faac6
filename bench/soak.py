"""Soak: the real processes under a steady mixed load for a bounded time (prints numbers; a gate).

    .venv/bin/python bench/soak.py [--duration 300] [--ws-clients 200] [--eval-rate 200] [--write-rate 1]

Starts the web server (granian ASGI, the production command: HTTP + /ws; --web-workers, default
1) and `manage.py grpcserver` on free ports (plus a Celery worker when
REDIS_URL is set) over a fresh SQLite database under artifacts/ (or DATABASE_URL / REDIS_URL when
set), creates flags of every rule type, an SDK key and a management token through the services,
then for --duration seconds, from this one asyncio process:

- evaluations at a fixed total rate (open loop; more than --max-inflight outstanding sheds, an
  error): REST POST /api/evaluate and /api/evaluate/bulk (a lean keep-alive client: httpx costs
  ~8x the client CPU), gRPC Evaluate and EvaluateBulk (grpc.aio); every answer is checked;
- writes through the REST API (httpx), one at a time at --write-rate: toggle, rules update, kill,
  restore (never leaving a flag killed);
- --ws-clients WebSocket clients on /ws and --grpc-watchers gRPC WatchFlags streams that must each
  receive every change: an event for the written flag at (or after) the write's version within
  --late-ms of the write being sent, else late (or missed after --deadline); a drop is an error
  (the client resumes with ?since=); at the end each one's version must equal the database's.

Every --window seconds it prints requests, errors and p50/p99 latency per type, change events
delivered / late / missed, and each server process's RSS and CPU. At the end: totals, p99 per
window, RSS at the end of warm-up (--warmup, default 20% of the run) vs the end, and a verdict.
Exit status 1 when there was any error or a process grew >= --max-growth percent (default 10),
so it can serve as a gate; 2 when the run could not start; 130 on Ctrl-C (partial summary).
Server logs (and the SQLite database) are kept in artifacts/soak-<time>/; tracebacks or ERROR
lines in the logs count as errors.
"""

import argparse
import asyncio
import bisect
import json
import os
import random
import resource
import signal
import statistics
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds grpc.py: keep the directory off the path so `import grpc` finds grpcio
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench import _common  # noqa: E402

ENVIRONMENT = "production"
CONTEXTS = [
    {"country": "US", "device": "mobile", "plan": "premium", "appVersion": "1.4.0", "email": "a@example.com", "age": 30},
    {"country": "DE", "device": "desktop", "plan": "free", "appVersion": "1.1.0", "email": "b@example.org", "age": 17},
    {"country": "CA", "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", "plan": "gold"},
    {"country": "FR", "device": "tablet", "appVersion": "2.0.0", "age": 45},
    {"ip": "8.8.8.8", "plan": "premium", "email": "c@example.com"},
    {},
]
KINDS = ("rest.eval", "rest.bulk", "grpc.eval", "grpc.bulk", "write")
WRITE_OPS = (("toggle", "toggled"), ("rules", "updated"), ("kill", "killed"), ("restore", "restored"))


# -- setup -----------------------------------------------------------------------------------------

def setup_data(flag_count):
    """Flags of every rule type (+ a multivariate A/B flag and a prerequisite), an SDK key for
    production and a management token, through the services. Returns (flag keys, sdk key, token,
    {flag: index of its current rule set})."""
    _common.django_setup()
    from audit.actor import Actor
    from flags import services
    from flags.models import Flag, FlagState

    keys = _common.create_flags("soak-flag", flag_count)
    actor = Actor.system("soak")
    extra = {
        "soak-ab": dict(kind="multivariate", variants=[
            {"key": "control", "weight": 50, "value": "blue"}, {"key": "treatment", "weight": 50, "value": "green"}],
            states={ENVIRONMENT: {"enabled": True, "rules": [{"type": "percentage", "operator": "less_than", "value": 90}]}}),
        "soak-prereq": dict(states={ENVIRONMENT: {"enabled": True, "rules": [
            {"type": "flag", "field": keys[0], "operator": "enabled"},
            {"type": "custom", "field": "plan", "operator": "exists"}]}}),
    }
    for key, fields in extra.items():
        if not Flag.objects.filter(key=key).exists():
            services.flag_create(actor=actor, key=key, name=key, **fields)
    # each flag's rule set as it is now: on a database an earlier run left, a flag keeps that run's
    # last rules, and a "rules" write repeating them would change nothing (no event, no version)
    current = dict(FlagState.objects.filter(flag__key__in=keys, environment__key=ENVIRONMENT)
                   .values_list("flag__key", "rules"))
    rule_index = {key: next((n for n, rules in enumerate(_common.RULE_SETS) if rules == current.get(key)), -1)
                  for key in keys}
    return keys + list(extra), _common.sdk_key(ENVIRONMENT, "soak"), _common.management_token("soak-admin", "soak"), rule_index


def environment_version():
    from flags.models import Environment

    return Environment.objects.filter(key=ENVIRONMENT).values_list("version", flat=True).get()


# -- followers: WebSocket clients and gRPC watchers that must see every change ---------------------

class Follower:
    """One change-event subscriber: what it saw, per flag, in version order."""

    def __init__(self, name):
        self.name = name
        self.version = None  # last environment version seen (hello, event, snapshot)
        self.seen = defaultdict(lambda: ([], [], []))  # flag -> (versions, arrival times, actions)

    def event(self, state, version, flag, action, arrived):
        if self.version is not None and version < self.version:
            state.error(f"{self.kind} event out of order (v{version} after v{self.version})")
        versions, times, actions = self.seen[flag]
        if versions and versions[-1] == version:  # a replay after a resume: keep the first arrival
            state.counts["duplicate events"] += 1
        else:
            versions.append(version)
            times.append(arrived)
            actions.append(action)
        self.version = max(version, self.version or 0)

    def delivery(self, write):
        """(arrival time, action) of the first event for the write's flag at or after its version."""
        versions, times, actions = self.seen.get(write["flag"], ((), (), ()))
        i = bisect.bisect_left(versions, write["version"])
        if i == len(versions):
            return None, None
        return times[i], actions[i] if versions[i] == write["version"] else None


class WsFollower(Follower):
    kind = "ws"


class GrpcFollower(Follower):
    kind = "grpc watch"


async def ws_follow(state, follower, url, ready):
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    first = True
    while not state.stopping:
        resume = f"&since={follower.version}" if follower.version is not None else ""
        try:
            async with connect(url + resume, open_timeout=30, max_queue=None, close_timeout=2) as ws:
                async for raw in ws:
                    arrived = time.perf_counter()
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "flag.changed":
                        follower.event(state, message["version"], message["flag"]["key"], message["action"], arrived)
                    elif kind == "hello":
                        follower.version = max(message["version"], follower.version or 0)
                        if first:
                            first = False
                            ready.release()
                    elif kind == "snapshot":
                        state.error("ws resume answered with a full snapshot (history too short)")
                        follower.version = message["version"]
                    elif kind == "environment.changed":
                        state.counts["environment.changed events"] += 1
                        follower.version = max(message["version"], follower.version or 0)
                    elif kind == "error":
                        state.error(f"ws error frame: {message.get('error', {}).get('code')}")
                    elif kind not in ("ping", "pong"):
                        state.error(f"ws unexpected frame type {kind!r}")
        except asyncio.CancelledError:
            raise
        except (OSError, WebSocketException, asyncio.TimeoutError) as exc:
            if state.stopping:
                break
            state.error(f"ws connection lost: {type(exc).__name__}: {str(exc)[:80]}")
        else:
            if state.stopping:
                break
            state.error("ws closed by the server")
        await asyncio.sleep(0.5)


async def grpc_follow(state, follower, stub, metadata, ready):
    import grpc

    from feature_flag_client._proto import flags_pb2

    first = True
    while not state.stopping:
        request = flags_pb2.WatchFlagsRequest(environment=ENVIRONMENT)
        if follower.version is not None:
            request.since_version = follower.version
        call = stub.WatchFlags(request, metadata=metadata)
        try:
            async for event in call:
                arrived = time.perf_counter()
                if event.type == "flag.changed":
                    follower.event(state, event.version, event.flag.fields["key"].string_value, event.action, arrived)
                elif event.type == "hello":
                    follower.version = max(event.version, follower.version or 0)
                    if first:
                        first = False
                        ready.release()
                elif event.type == "snapshot":
                    state.error("gRPC watch resume answered with a full snapshot")
                    follower.version = event.version
                elif event.type == "environment.changed":
                    state.counts["environment.changed events"] += 1
                    follower.version = max(event.version, follower.version or 0)
            if not state.stopping:
                state.error("gRPC watch stream ended by the server")
        except asyncio.CancelledError:
            call.cancel()
            raise
        except grpc.aio.AioRpcError as exc:
            if state.stopping:
                break
            state.error(f"gRPC watch failed: {exc.code().name}")
        await asyncio.sleep(0.5)


# -- a lean HTTP client for the evaluation calls ---------------------------------------------------

class KeepAliveHttp:
    """HTTP/1.1 keep-alive POSTs of JSON over a pool of connections. The evaluation calls use this
    rather than httpx: httpx costs ~1.5 ms of client CPU per request here, this ~0.2 ms, and on 2
    shared cores the load generator must not be what saturates (writes and checks use httpx)."""

    def __init__(self, host, port, headers):
        self.host, self.port = host, port
        self.head = "".join(f"{name}: {value}\r\n" for name, value in {
            "Host": f"{host}:{port}", "Content-Type": "application/json", **headers}.items())
        self.free = []
        self.stale = 0  # pooled connections the server closed while they were idle (not used)

    async def post(self, path, data):
        body = json.dumps(data, separators=(",", ":")).encode()
        connection = None
        while self.free and connection is None:
            connection = self.free.pop()
            if connection[0].at_eof() or connection[1].is_closing():  # the server closed it while idle
                connection[1].close()
                connection = None
                self.stale += 1
        reader, writer = connection or await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
        except BaseException:
            writer.close()
            raise
        return await self._answer(reader, writer, head)

    async def _answer(self, reader, writer, head):
        try:
            head = head.decode("latin-1")
            status = int(head[9:12])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.split("\r\n")[1:] if line)}
            if "content-length" in fields:
                payload = await reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                payload = b""
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    payload += (await reader.readexactly(size + 2))[:-2]
                await reader.readuntil(b"\r\n")
            else:
                raise ValueError("answer without a length")
        except BaseException:
            writer.close()
            raise
        if fields.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.free.append((reader, writer))
        return status, payload

    def close(self):
        for _, writer in self.free:
            writer.close()
        self.free.clear()


# -- run state and reporting -----------------------------------------------------------------------

class Window:
    def __init__(self):
        self.latency = defaultdict(list)  # kind -> seconds
        self.errors = Counter()  # kind -> errors
        self.other_errors = 0
        self.delivered = self.late = self.missed = 0
        self.delivery = []  # seconds from write sent to event arrival
        self.rss = {}  # process -> max bytes sampled
        self.lag = 0.0
        self.load = 0.0  # the machine's 1-minute load average at the window's end (other work too)


class State:
    def __init__(self, args):
        self.args = args
        self.stopping = False
        self.window = Window()
        self.windows = []  # (end second, Window, {process: cpu %})
        self.errors = Counter()  # reason -> count (every error of the run)
        self.counts = Counter()  # informational
        self.totals = defaultdict(list)  # kind -> latencies
        self.writes = []  # every write: flag, action, version, sent, returned
        self.pending = []  # writes not yet checked at the followers
        self.followers = []
        self.inflight = 0
        self.interrupted = False
        self.final = {}

    def error(self, reason, kind=None):
        self.errors[reason] += 1
        if kind:
            self.window.errors[kind] += 1
        else:
            self.window.other_errors += 1

    def check_writes(self, now, final=False):
        """Score each write older than the deadline (all of them when final) at every follower."""
        deadline = self.args.deadline
        still = []
        for write in self.pending:
            if not final and now - write["sent"] < deadline:
                still.append(write)
                continue
            for follower in self.followers:
                arrived, action = follower.delivery(write)
                if arrived is None:
                    self.window.missed += 1
                    self.error(f"{follower.kind} event missed ({write['action']})")
                    continue
                latency = arrived - write["sent"]
                self.window.delivery.append(latency)
                if action is not None and action != write["action"]:
                    self.error(f"{follower.kind} event action {action!r}, expected {write['action']!r}")
                if latency * 1000 > self.args.late_ms:
                    self.window.late += 1
                    self.error(f"{follower.kind} event late (> {self.args.late_ms:g} ms)")
                else:
                    self.window.delivered += 1
        self.pending = still


def fmt_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.1f}" if seconds < 0.1 else f"{seconds * 1000:.0f}"


def pct(values, fraction):
    return _common.percentile(sorted(values), fraction)


class Processes:
    """The servers, sampled for RSS and CPU."""

    def __init__(self, servers):
        self.servers = servers  # name -> (Server, tree)
        self.cpu_mark = {name: (_common.cpu_seconds(s.pid, tree), time.perf_counter())
                         for name, (s, tree) in servers.items()}
        self.cpu_mark["bench"] = (time.process_time(), time.perf_counter())

    def rss(self):
        return {name: _common.rss_bytes(s.pid, tree) for name, (s, tree) in self.servers.items()}

    def cpu_percent(self):
        result = {}
        for name, (server, tree) in self.servers.items():
            seconds, at = _common.cpu_seconds(server.pid, tree), time.perf_counter()
            before, then = self.cpu_mark[name]
            result[name] = 100.0 * (seconds - before) / max(at - then, 1e-6)
            self.cpu_mark[name] = (seconds, at)
        seconds, at = time.process_time(), time.perf_counter()  # this load generator itself
        before, then = self.cpu_mark["bench"]
        result["bench"] = 100.0 * (seconds - before) / max(at - then, 1e-6)
        self.cpu_mark["bench"] = (seconds, at)
        return result

    def dead(self):
        return [name for name, (server, _) in self.servers.items() if not server.alive()]


def header(names):
    groups = "".join(f"| {kind:<20}" for kind in KINDS)
    return (f"{'t':>5} {groups}| {'err':>4} | {'events ok/late/miss':<19} {'p99':>5} | "
            + " ".join(f"{'RSS ' + n:>10}" for n in names) + " | " + " ".join(f"{'cpu ' + n:>9}" for n in names + ["bench"])
            + f" | {'lag':>4} {'load':>5}\n{'':>5} " + "".join(f"| {'n':>6} {'p50':>6} {'p99':>6} " for _ in KINDS)
            + f"| {'':>4} | {'':<19} {'ms':>5} | " + " ".join(f"{'MB':>10}" for _ in names)
            + " | " + " ".join(f"{'%':>9}" for _ in names + ["bench"]) + f" | {'ms':>4} {'1 min':>5}")


def report_line(t, window, cpu, names):
    cells = []
    for kind in KINDS:
        values = sorted(window.latency[kind])
        cells.append(f"| {len(values) + window.errors[kind]:>6} {fmt_ms(_common.percentile(values, 0.5)):>6} "
                     f"{fmt_ms(_common.percentile(values, 0.99)):>6} ")
    errors = sum(window.errors.values()) + window.other_errors
    events = f"{window.delivered}/{window.late}/{window.missed}"
    return (f"{t:>4.0f}s " + "".join(cells) + f"| {errors:>4} | {events:<19} {fmt_ms(pct(window.delivery, 0.99)):>5} | "
            + " ".join(f"{window.rss.get(n, 0) / 2**20:>10.1f}" for n in names) + " | "
            + " ".join(f"{cpu.get(n, 0):>9.0f}" for n in names + ["bench"])
            + f" | {window.lag * 1000:>4.0f} {window.load:>5.1f}")


# -- the load --------------------------------------------------------------------------------------

async def soak(state, processes, web_url, grpc_target, sdk_key, token, flags, rule_index, db):
    import grpc
    import httpx

    from feature_flag_client._proto import flags_pb2, flags_pb2_grpc
    from feature_flag_client._protojson import to_struct

    args = state.args
    rng = random.Random(args.seed)
    loop = asyncio.get_running_loop()
    names = list(processes.servers)
    structs = [to_struct(context) for context in CONTEXTS]
    metadata = (("authorization", f"Bearer {sdk_key}"),)
    host, port = web_url.rsplit("/", 1)[1].split(":")
    rest = KeepAliveHttp(host, int(port), {"Authorization": f"Bearer {sdk_key}"})
    sdk = httpx.AsyncClient(base_url=web_url, headers={"Authorization": f"Bearer {sdk_key}"}, timeout=args.timeout)
    admin = httpx.AsyncClient(base_url=web_url, headers={"Authorization": f"Bearer {token}"}, timeout=args.timeout)
    channel = grpc.aio.insecure_channel(grpc_target)
    watch_channel = grpc.aio.insecure_channel(grpc_target)  # streams apart from the unary calls
    stub = flags_pb2_grpc.FlagServiceStub(channel)
    watch_stub = flags_pb2_grpc.FlagServiceStub(watch_channel)
    tasks = []

    async def rest_eval():
        flag, context = rng.choice(flags), rng.randrange(len(CONTEXTS))
        status, payload = await asyncio.wait_for(rest.post("/api/evaluate", {
            "flagId": flag, "userId": f"user-{rng.randrange(20000)}", "context": CONTEXTS[context]}), args.timeout)
        if status != 200:
            return f"HTTP {status}"
        if json.loads(payload).get("flagId") != flag:
            return "wrong flagId in answer"

    async def rest_bulk():
        context = rng.randrange(len(CONTEXTS))
        body = {"userId": f"user-{rng.randrange(20000)}", "context": CONTEXTS[context]}
        if rng.random() < 0.5:
            body["flagIds"] = flags
        status, payload = await asyncio.wait_for(rest.post("/api/evaluate/bulk", body), args.timeout)
        if status != 200:
            return f"HTTP {status}"
        answer = json.loads(payload)["flags"]
        if not set(flags) <= set(answer) or any(value["reason"] == "FLAG_NOT_FOUND" for value in answer.values()):
            return f"bulk answered {len(answer)} flags, expected {len(flags)}"

    async def grpc_eval():
        flag = rng.choice(flags)
        response = await stub.Evaluate(flags_pb2.EvaluateRequest(
            flag_id=flag, user_id=f"user-{rng.randrange(20000)}", context=rng.choice(structs)),
            metadata=metadata, timeout=args.timeout)
        if response.evaluation.flag_id != flag or response.evaluation.reason == "FLAG_NOT_FOUND":
            return "wrong evaluation"

    async def grpc_bulk():
        response = await stub.EvaluateBulk(flags_pb2.EvaluateBulkRequest(
            user_id=f"user-{rng.randrange(20000)}", context=rng.choice(structs)), metadata=metadata, timeout=args.timeout)
        answer = {e.flag_id for e in response.evaluations}
        if not set(flags) <= answer or any(e.error.code or e.reason == "FLAG_NOT_FOUND" for e in response.evaluations):
            return f"bulk answered {len(answer)} flags, expected {len(flags)}"

    calls = {"rest.eval": rest_eval, "rest.bulk": rest_bulk, "grpc.eval": grpc_eval, "grpc.bulk": grpc_bulk}
    mix = [(kind, weight) for kind, weight in args.mix.items() if weight > 0]
    kinds, weights = [k for k, _ in mix], [w for _, w in mix]
    inflight = set()

    async def one(kind):
        started = time.perf_counter()
        try:
            problem = await calls[kind]()
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            problem = f"gRPC {exc.code().name}"
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
            problem = f"{type(exc).__name__}: {str(exc)[:60]}"
        if problem:
            state.error(f"{kind}: {problem}", kind)
        else:
            elapsed = time.perf_counter() - started
            state.window.latency[kind].append(elapsed)
            state.totals[kind].append(elapsed)

    async def evaluations(until):
        """Open loop: issue what the clock says is due (every 5 ms), never more than max in flight."""
        started = time.perf_counter()
        issued = 0
        while (now := time.perf_counter()) < until:
            due = int((now - started) * args.eval_rate) - issued
            for kind in rng.choices(kinds, weights, k=max(due, 0)):
                issued += 1
                if len(inflight) >= args.max_inflight:
                    state.error("evaluation shed: too many in flight", kind)
                    continue
                task = loop.create_task(one(kind))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            await asyncio.sleep(0.005)

    async def write(number):
        op, action = WRITE_OPS[number % len(WRITE_OPS)]
        flag = flags[(number // len(WRITE_OPS)) % (len(flags) - 2)]  # the rule-set flags only
        if op == "toggle":
            request = admin.patch(f"/api/flags/{flag}/toggle", params={"environment": ENVIRONMENT}, json={})
        elif op == "rules":
            rule_index[flag] = (rule_index[flag] + 1 + rng.randrange(len(_common.RULE_SETS) - 1)) % len(_common.RULE_SETS)
            request = admin.patch(f"/api/flags/{flag}", params={"environment": ENVIRONMENT},
                                  json={"rules": _common.RULE_SETS[rule_index[flag]]})
        elif op == "kill":
            request = admin.post(f"/api/flags/{flag}/kill-switch", json={"reason": f"soak write {number}"})
        else:
            request = admin.post(f"/api/flags/{flag}/restore", json={"reason": "soak"})
        sent = time.perf_counter()
        try:
            response = await request
        except Exception as exc:  # noqa: BLE001
            state.error(f"write {op}: {type(exc).__name__}", "write")
            return
        returned = time.perf_counter()
        if response.status_code != 200:
            state.error(f"write {op}: HTTP {response.status_code}", "write")
            return
        state.window.latency["write"].append(returned - sent)
        state.totals["write"].append(returned - sent)
        version = await loop.run_in_executor(db, environment_version)
        record = {"flag": flag, "action": action, "version": version, "sent": sent, "returned": returned}
        if state.writes and version != state.writes[-1]["version"] + 1:
            state.counts["writes that moved the version by != 1"] += 1
        state.writes.append(record)
        state.pending.append(record)

    async def writes(until):
        """One write every 1/--write-rate seconds; a slow write delays the next (no catch-up burst)."""
        number = 0
        while (due := time.perf_counter()) < until:
            await write(number)
            number += 1
            delay = due + 1 / args.write_rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(min(delay, max(until - time.perf_counter(), 0)))
        # leave no flag killed: the next run (and the final state) starts clean
        if number % len(WRITE_OPS) == 3:
            await write(number)

    async def sampler(until):
        """RSS every second (each window keeps its maximum) and the event loop's own lag."""
        while time.perf_counter() < until:
            for name, value in processes.rss().items():
                state.window.rss[name] = max(state.window.rss.get(name, 0), value)
            before = time.perf_counter()
            for _ in range(20):
                tick = time.perf_counter()
                await asyncio.sleep(0.05)
                state.window.lag = max(state.window.lag, time.perf_counter() - tick - 0.05)
            if time.perf_counter() - before > 5:
                state.counts["sampler stalls > 5 s"] += 1

    async def reporter(start, until):
        boundary = start
        while True:
            boundary += args.window
            await asyncio.sleep(max(boundary - time.perf_counter(), 0))
            now = time.perf_counter()
            state.check_writes(now)
            for name in processes.dead():
                state.error(f"process {name} exited")
            window, state.window = state.window, Window()
            window.load = os.getloadavg()[0]
            cpu = processes.cpu_percent()
            state.windows.append((boundary - start, window, cpu))
            print(report_line(boundary - start, window, cpu, names), flush=True)
            if processes.dead():
                state.stopping = True
                raise RuntimeError(f"server process exited: {', '.join(processes.dead())}")
            if boundary >= until - 1e-6:
                return

    try:
        # followers first: every one must hold its hello before the first write
        ready = asyncio.Semaphore(0)
        ws_url = f"{web_url.replace('http', 'ws', 1)}/ws?key={sdk_key}"
        connect_started = time.perf_counter()
        for batch in range(0, args.ws_clients, 50):  # in waves, as a fleet of services would connect
            size = min(50, args.ws_clients - batch)
            for n in range(batch, batch + size):
                follower = WsFollower(f"ws-{n}")
                state.followers.append(follower)
                tasks.append(loop.create_task(ws_follow(state, follower, ws_url, ready)))
            for _ in range(size):
                await asyncio.wait_for(ready.acquire(), timeout=60)
        for n in range(args.grpc_watchers):
            follower = GrpcFollower(f"grpc-{n}")
            state.followers.append(follower)
            tasks.append(loop.create_task(grpc_follow(state, follower, watch_stub, metadata, ready)))
        for _ in range(args.grpc_watchers):
            await asyncio.wait_for(ready.acquire(), timeout=60)
        print(f"{args.ws_clients} WebSocket clients and {args.grpc_watchers} gRPC watchers following "
              f"'{ENVIRONMENT}' (connected in {time.perf_counter() - connect_started:.1f} s)\n", flush=True)

        for _ in range(20):  # warm the connection pools, key caches and snapshots
            for kind in kinds:
                await one(kind)
        state.totals.clear()
        state.window = Window()
        processes.cpu_percent()
        print(header(names), flush=True)

        start = time.perf_counter()
        until = start + args.duration
        load = [loop.create_task(evaluations(until)), loop.create_task(writes(until)), loop.create_task(sampler(until))]
        tasks.extend(load)
        await reporter(start, until)
        await asyncio.gather(*load)

        # drain: in-flight calls finish, every follower catches up with the database's version
        if inflight:
            done, late = await asyncio.wait(set(inflight), timeout=args.timeout + 5)
            for task in late:
                task.cancel()
        final_version = await loop.run_in_executor(db, environment_version)
        deadline = time.perf_counter() + args.deadline
        while time.perf_counter() < deadline and any(f.version != final_version for f in state.followers):
            await asyncio.sleep(0.1)
        state.window = Window()
        state.check_writes(time.perf_counter(), final=True)
        behind = [f for f in state.followers if f.version != final_version]
        for follower in behind:
            state.error(f"{follower.kind} client ended at v{follower.version}, server at v{final_version}")
        drain = state.window
        state.final.update(version=final_version, behind=len(behind), drain=drain)
        health = await sdk.get("/api/health")
        if health.status_code != 200:
            state.error(f"/api/health after the run: HTTP {health.status_code}")
    finally:
        state.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in list(inflight):
            task.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        if rest.stale:
            state.counts["idle REST connections the server had closed (skipped)"] += rest.stale
        rest.close()
        await sdk.aclose()
        await admin.aclose()
        await channel.close()
        await watch_channel.close()


# -- summary ---------------------------------------------------------------------------------------

def log_problems(logs):
    """{process: (tracebacks + ERROR/CRITICAL lines, WARNING lines)} from the server logs."""
    result = {}
    for name, path in logs.items():
        errors = warnings = 0
        try:
            with open(path, errors="replace") as fh:
                for line in fh:
                    # Django's text format (" ERROR ") and granian's own ("[ERROR]", e.g. a worker died)
                    if line.startswith("Traceback") or any(f"{c}ERROR{d}" in line or f"{c}CRITICAL{d}" in line
                                                           for c, d in ((" ", " "), ("[", "]"))):
                        errors += 1
                    elif " WARNING " in line or "[WARNING]" in line:
                        warnings += 1
        except OSError:
            pass
        result[name] = (errors, warnings)
    return result


def summary(state, names, logs):
    args = state.args
    windows = state.windows
    print(f"\n=== soak summary: {windows[-1][0] if windows else 0:.0f} s of load"
          f"{' (interrupted)' if state.interrupted else ''} ===")
    print(f"{'type':<10} {'requests':>9} {'errors':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    elapsed = max(windows[-1][0], 1) if windows else 1
    for kind in KINDS:
        values = sorted(state.totals[kind])
        errors = sum(w.errors[kind] for _, w, _ in windows)
        print(f"{kind:<10} {len(values) + errors:>9} {errors:>7} {(len(values) + errors) / elapsed:>7.1f} "
              f"{fmt_ms(_common.percentile(values, 0.5)):>8} {fmt_ms(_common.percentile(values, 0.99)):>8} "
              f"{fmt_ms(values[-1] if values else None):>8}")
    print("\np99 ms per window (t = end of window):")
    print(f"{'t':>10} " + " ".join(f"{t:>5.0f}" for t, _, _ in windows))
    for kind in KINDS:
        print(f"{kind:>10} " + " ".join(f"{fmt_ms(pct(w.latency[kind], 0.99)):>5}" for _, w, _ in windows))
    print(f"{'events':>10} " + " ".join(f"{fmt_ms(pct(w.delivery, 0.99)):>5}" for _, w, _ in windows))

    all_windows = [w for _, w, _ in windows] + ([state.final["drain"]] if "drain" in state.final else [])
    delivered = sum(w.delivered for w in all_windows)
    late = sum(w.late for w in all_windows)
    missed = sum(w.missed for w in all_windows)
    delivery = sorted(d for w in all_windows for d in w.delivery)
    print(f"\nchange events: {len(state.writes)} writes x {len(state.followers)} followers "
          f"({args.ws_clients} WebSocket, {args.grpc_watchers} gRPC): delivered {delivered}, late {late}, missed {missed}; "
          f"from write sent p50 {fmt_ms(_common.percentile(delivery, 0.5))} ms, "
          f"p99 {fmt_ms(_common.percentile(delivery, 0.99))} ms, max {fmt_ms(delivery[-1] if delivery else None)} ms")
    if "version" in state.final:
        print(f"final version v{state.final['version']}: {len(state.followers) - state.final['behind']}/"
              f"{len(state.followers)} followers there")

    growth = {}
    warm_index = next((i for i, (t, _, _) in enumerate(windows) if t >= args.warmup - 1e-6), None)
    if warm_index is not None and len(windows) > warm_index + 1:
        warm_t, warm, _ = windows[warm_index]
        end_t, end, _ = windows[-1]
        print(f"\nRSS (max sampled in the window): after warm-up (t={warm_t:.0f} s) vs end (t={end_t:.0f} s)")
        print(f"{'process':<8} {'start MB':>9} {'warm MB':>9} {'end MB':>9} {'peak MB':>9} {'growth':>8}   per window")
        for name in names:
            values = [w.rss.get(name, 0) for _, w, _ in windows]
            warm_rss, end_rss = warm.rss.get(name, 0), end.rss.get(name, 0)
            growth[name] = 100.0 * (end_rss - warm_rss) / warm_rss if warm_rss else 0.0
            trend = " ".join(f"{v / 2**20:.0f}" for v in values)
            print(f"{name:<8} {values[0] / 2**20:>9.1f} {warm_rss / 2**20:>9.1f} {end_rss / 2**20:>9.1f} "
                  f"{max(values) / 2**20:>9.1f} {growth[name]:>+7.1f}%   {trend}")
        cpu = {name: statistics.mean(c[name] for _, _, c in windows) for name in names + ["bench"]}
        print("mean CPU: " + ", ".join(f"{name} {value:.0f}%" for name, value in cpu.items())
              + f" (of one core; {os.cpu_count()} cores); max client loop lag "
              f"{max(w.lag for _, w, _ in windows) * 1000:.0f} ms; machine load average "
              f"{statistics.mean(w.load for _, w, _ in windows):.1f} (mean of the windows' 1-minute values)")
    else:
        print("\nRSS: the run ended before the warm-up did; no growth measured")

    for name, (errors, warnings) in log_problems(logs).items():
        if errors:
            state.errors[f"{name} log: {errors} traceback/ERROR lines"] += errors
        if errors or warnings:
            print(f"{name} log ({logs[name]}): {errors} traceback/ERROR lines, {warnings} WARNING lines")
    if state.counts:
        print("notes: " + ", ".join(f"{reason} {count}" for reason, count in state.counts.items()))
    total = sum(state.errors.values())
    print(f"\nerrors: {total} (goal 0)")
    for reason, count in state.errors.most_common(15):
        print(f"  {count:>6}  {reason}")
    grew = {name: g for name, g in growth.items() if g >= args.max_growth}
    ok = total == 0 and not grew and bool(growth) and not state.interrupted
    verdict = ("PASS" if ok else "FAIL") + f": {total} errors, RSS growth after warm-up " + (
        ", ".join(f"{name} {g:+.1f}%" for name, g in growth.items()) or "not measured") + f" (limit {args.max_growth:g}%)"
    print(verdict)
    return ok


# -- main ------------------------------------------------------------------------------------------

def parse_mix(text):
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in KINDS[:-1]:
            raise argparse.ArgumentTypeError(f"unknown kind {kind!r} (rest.eval, rest.bulk, grpc.eval, grpc.bulk)")
        mix[kind.strip()] = float(weight)
    return mix


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    parser.add_argument("--ws-clients", type=int, default=200)
    parser.add_argument("--grpc-watchers", type=int, default=4, help="gRPC WatchFlags streams (default 4)")
    parser.add_argument("--eval-rate", type=float, default=200, help="evaluation calls per second, all kinds")
    parser.add_argument("--write-rate", type=float, default=1, help="REST writes per second")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("rest.eval=30,rest.bulk=10,grpc.eval=45,grpc.bulk=15"),
                        help="relative weights of the evaluation kinds (default rest.eval=30,rest.bulk=10,grpc.eval=45,grpc.bulk=15)")
    parser.add_argument("--flags", type=int, default=20, help="flags with rules (+2: A/B, prerequisite)")
    parser.add_argument("--window", type=float, default=10, help="seconds per report line")
    parser.add_argument("--warmup", type=float, help="RSS baseline time (default 20%% of --duration)")
    parser.add_argument("--max-growth", type=float, default=10, help="RSS growth %% that fails the run")
    parser.add_argument("--late-ms", type=float, default=1000, help="an event later than this after its write is an error")
    parser.add_argument("--deadline", type=float, default=5, help="seconds after which an event not received is missed")
    parser.add_argument("--timeout", type=float, default=5, help="seconds per request")
    parser.add_argument("--max-inflight", type=int, default=200, help="evaluations in flight before shedding (an error)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--asgi-app", default="flagsite.asgi:application",
                        help="what granian serves (a wrapper module on PYTHONPATH to try a patch)")
    parser.add_argument("--web-workers", type=int, default=1, help="granian workers (default 1)")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = 0.2 * args.duration
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stamp = time.strftime("%Y%m%d-%H%M%S")
    logs_dir = _common.ARTIFACTS / f"soak-{stamp}"
    logs_dir.mkdir(parents=True, exist_ok=True)
    database = _common.use_own_database(f"soak-{stamp}/soak")  # the run's own directory
    redis = os.environ.get("REDIS_URL", "")
    child_env = {"DEBUG": "false"}
    if redis:  # own keys, channels and broker queue names next to anything else on that Redis
        os.environ.setdefault("CACHE_KEY_PREFIX", f"soak{os.getpid()}")
        child_env["CACHE_KEY_PREFIX"] = os.environ["CACHE_KEY_PREFIX"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
    flags, sdk_key, token, rule_index = setup_data(args.flags)
    db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soak-db")  # one connection for version reads

    python = sys.executable
    web_port, grpc_port = _common.free_port(), _common.free_port()
    logs = {"web": logs_dir / "web.log", "grpc": logs_dir / "grpc.log"}
    commands = {
        "web": (_common.granian_command(web_port, args.web_workers, app=args.asgi_app), web_port),
        "grpc": ([python, "manage.py", "grpcserver", "--host", "127.0.0.1", "--port", str(grpc_port)], grpc_port),
    }
    if redis:
        logs["worker"] = logs_dir / "worker.log"
        commands["worker"] = ([str(Path(python).parent / "celery"), "-A", "flagsite", "worker", "--loglevel", "warning",
                               "--concurrency", "1", "-n", f"soak{os.getpid()}@%h"], None)
    print(f"soak: {args.duration:g} s; evaluations {args.eval_rate:g}/s ("
          + ", ".join(f"{k} {w:g}" for k, w in args.mix.items()) + f"), writes {args.write_rate:g}/s, "
          f"{args.ws_clients} WebSocket clients, {args.grpc_watchers} gRPC watchers; {len(flags)} flags")
    print(f"database {database.split(':')[0]}, {'Redis ' + redis if redis else 'no Redis (in-process layer, eager Celery)'}; "
          f"{os.cpu_count()} cores; logs in {logs_dir.relative_to(_common.ROOT)}/")

    servers = {}
    state = State(args)
    ok = False

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        try:
            for name, (command, port) in commands.items():
                servers[name] = _common.Server(name, command, env=child_env, port=port, log=logs[name])
            print("processes: " + ", ".join(f"{name} pid {s.pid}" + (f" :{s.port}" if s.port else "")
                                            for name, s in servers.items()), flush=True)
        except (RuntimeError, OSError) as exc:
            print(f"could not start the servers: {exc}", file=sys.stderr)
            return 2
        # web (granian's workers) and the Celery worker (its pool) are process trees
        processes = Processes({name: (server, name in ("web", "worker")) for name, server in servers.items()})
        try:
            asyncio.run(asyncio.wait_for(
                soak(state, processes, f"http://127.0.0.1:{web_port}", f"127.0.0.1:{grpc_port}", sdk_key, token,
                     flags, rule_index, db),
                timeout=args.duration + 300))  # bounded, whatever happens
        except KeyboardInterrupt:
            state.interrupted = True
            print("\ninterrupted", flush=True)
        except (RuntimeError, asyncio.TimeoutError) as exc:
            state.error(f"run aborted: {type(exc).__name__}: {exc}")
            print(f"\nrun aborted: {exc}", flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for name, server in servers.items():
            code = server.stop()
            if code not in (0, -signal.SIGTERM, None) and not state.interrupted:
                state.error(f"process {name} exited with {code} at shutdown")
        db.shutdown(wait=False)

    from audit.chain import verify_chain

    chain = verify_chain()
    if not chain.ok:
        state.error(f"audit chain broken at entry #{chain.broken_entry_id}: {chain.problem}")
    ok = summary(state, list(servers), logs)
    print(f"audit chain: {'OK' if chain.ok else 'BROKEN'} ({chain.checked} entries)")
    if state.interrupted:
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
