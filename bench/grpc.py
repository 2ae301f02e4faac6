"""gRPC evaluation benchmark (prints numbers; not a test).

Unary flags.v1.FlagService/Evaluate against `manage.py grpcserver`, beside a do-nothing servicer on
the same server construction (grpc_api.transport: grpcio sync server, thread pools, options, health
and reflection; answering a prebuilt response: the grpcio floor) and REST POST /api/evaluate under
granian (ASGI, the production web command), all in the same run, at concurrency 1 and 50.
Clients: grpc.aio for gRPC (one channel; 2 per worker with --workers), a minimal asyncio HTTP/1.1
keep-alive client (one connection per concurrent caller) for REST, both in this process. A gRPC
call costs a Python client more than that raw HTTP request, so at c=1, where the client's time is
most of a round trip, latency favours REST; "server CPU us/call" (the server's process tree, from
/proc) is the comparison no client skews. Then one caller through the SDK's own clients, as a
Python service calls (GrpcFlagClient, grpcio; FeatureFlagClient, httpx): the latency a service
sees per evaluation. Same body everywhere: one flag, a 6-field context. Rounds are interleaved
and the median round is shown. --pin-cpus pins each gRPC worker (ours and the floor's) to a CPU,
as `grpcserver --pin-cpus` does; granian has no such option. --breakdown adds a server whose
Evaluate only evaluates (no auth, validation, context conversion, counting or metrics): how much
of the gap to the floor is the evaluation itself. The gRPC server runs as deployed: metrics
on (--metrics-port), analytics counting, its watcher polling.

    .venv/bin/python bench/grpc.py [--duration 5] [--rounds 3] [--workers 1] [--concurrency 1,50]
                                   [--threads 64] [--unary-threads 4] [--channels N] [--pin-cpus]
                                   [--breakdown] [--no-sdk]

Uses its own SQLite database under artifacts/ unless DATABASE_URL is set.
"""

import argparse
import asyncio
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# this file is named grpc.py: keep its own directory off the path so `import grpc` finds grpcio
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
from bench import _common  # noqa: E402
FLAG = "bench-flag-01"
CONTEXT = {"country": "US", "device": "mobile", "plan": "premium", "appVersion": "1.4.0",
           "email": "a@example.com", "age": 30}


def _stubs():
    from feature_flag_client._proto import flags_pb2, flags_pb2_grpc

    return flags_pb2, flags_pb2_grpc


def floor_server(port, threads, unary_threads, reuse_port, pin_index=None):
    """The do-nothing servicer on the very server grpc_api.server.FlagServer builds (grpc_api.transport:
    thread pool, options, health and reflection, heap settled after start, pinned as `grpcserver
    --pin-cpus` pins), answering a prebuilt response with no work."""
    from grpc_api.transport import (SERVICE_NAME, add_flag_service, add_standard_services, build_server, pin_to_cpu,
                                    settle_heap)

    if pin_index is not None:
        pin_to_cpu(pin_index)
    flags_pb2, flags_pb2_grpc = _stubs()
    response = flags_pb2.EvaluateResponse(evaluation=flags_pb2.Evaluation(
        flag_id=FLAG, enabled=True, reason="TARGETING_MATCH", environment="production", version=1))
    response.evaluation.value.bool_value = True

    class Nothing(flags_pb2_grpc.FlagServiceServicer):
        def Evaluate(self, request, context):
            return response

    server, _executor, unary = build_server(threads, reuse_port, unary_threads)
    add_flag_service(server, Nothing(), unary)
    add_standard_services(server, (SERVICE_NAME,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    settle_heap()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    server.wait_for_termination()


def evaluate_only_server(port, threads, unary_threads, reuse_port, pin_index=None):
    """(--breakdown) `grpcserver`'s FlagServer with Evaluate cut down to the evaluation itself: the
    snapshot's answer for the flag, user and the bench's context (prebuilt, not converted), as the
    shared per-result response. No auth, validation, context conversion, counting or metrics: the
    part of Evaluate's cost that is the evaluation, beside the floor's and the full handler's."""
    _common.django_setup(migrate=False)
    from flags.snapshot import get_snapshot
    from grpc_api.server import FlagServer
    from grpc_api.servicer import FlagService
    from grpc_api.transport import pin_to_cpu, settle_heap

    if pin_index is not None:
        pin_to_cpu(pin_index)

    def evaluate_only(self, request, context):
        return self._response(get_snapshot("production").evaluate(request.flag_id, request.user_id, CONTEXT))

    FlagService.Evaluate = evaluate_only
    server = FlagServer(f"127.0.0.1:{port}", threads=threads, unary_threads=unary_threads, reuse_port=reuse_port)
    server.start()
    settle_heap()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.2):  # timed: SIGTERM may land on another thread (see grpcserver)
        pass
    server.stop(0)


def setup_data():
    _common.django_setup()
    _common.create_flags("bench-flag", 20)  # the flags bench/rest.py evaluates
    return _common.sdk_key("production", "bench")


async def grpc_load(port, key, concurrency, duration, cpu, channels=1):
    """`channels` channels, each its own TCP connection (SO_REUSEPORT spreads connections, not
    calls, over a server's worker processes); concurrent callers take them in turn."""
    import grpc

    from feature_flag_client._protojson import to_struct

    flags_pb2, flags_pb2_grpc = _stubs()
    request = flags_pb2.EvaluateRequest(flag_id=FLAG, user_id="user-123", context=to_struct(CONTEXT))
    metadata = (("authorization", f"Bearer {key}"),)
    opened = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
              for _ in range(channels)]
    stubs = [flags_pb2_grpc.FlagServiceStub(channel) for channel in opened]
    try:
        for stub in stubs:
            for _ in range(200):  # warm up: connection, key cache, snapshot
                await stub.Evaluate(request, metadata=metadata)
        turn = itertools.count()

        async def call():
            response = await stubs[next(turn) % channels].Evaluate(request, metadata=metadata)
            assert response.evaluation.flag_id == FLAG

        return await _drive(call, concurrency, duration, cpu)
    finally:
        for channel in opened:
            await channel.close()


async def rest_load(port, key, concurrency, duration, cpu):
    body = json.dumps({"flagId": FLAG, "userId": "user-123", "context": CONTEXT}).encode()
    head = (f"POST /api/evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    message = head + body
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    free = asyncio.Queue()
    for connection in connections:
        free.put_nowait(connection)

    async def call():
        reader, writer = await free.get()
        writer.write(message)
        headers = await reader.readuntil(b"\r\n\r\n")
        status = headers[9:12]
        length = int(headers.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        free.put_nowait((reader, writer))
        assert status == b"200", headers

    for _ in range(200):
        await call()
    try:
        return await _drive(call, concurrency, duration, cpu)
    finally:
        for _, writer in connections:
            writer.close()


def sdk_load(transport, port, key, duration, cpu):
    """One caller through the SDK's own clients, what a Python service calls: GrpcFlagClient (grpcio,
    sync) for gRPC, FeatureFlagClient (httpx, sync) for REST. Returns what _drive returns."""
    from feature_flag_client import FeatureFlagClient
    from feature_flag_client.grpc import GrpcFlagClient

    if transport == "gRPC":
        client = GrpcFlagClient(f"127.0.0.1:{port}", key)
        evaluate = functools.partial(client.evaluate, FLAG, "user-123", CONTEXT)
    else:
        client = FeatureFlagClient(f"http://127.0.0.1:{port}/api", key, retries=0)
        evaluate = functools.partial(client.evaluate_flag, FLAG, "user-123", CONTEXT)
    try:
        for _ in range(200):
            evaluate()

        async def call():
            assert evaluate()["flagId"] == FLAG

        return asyncio.run(_drive(call, 1, duration, cpu))
    finally:
        client.close()


def server_cpu_seconds(pids):
    """CPU seconds of these server processes and their descendants (workers) so far."""
    return sum(_common.cpu_seconds(pid, tree=True) for pid in pids)


async def _drive(call, concurrency, duration, cpu):
    """Calls/s, p50/p99 ms, and the server's CPU time per call (`cpu()`: its CPU seconds so far)."""
    latencies = []
    cpu_before = cpu()
    deadline = time.perf_counter() + duration

    async def worker():
        perf = time.perf_counter
        while True:
            started = perf()
            if started >= deadline:
                return
            await call()
            latencies.append(perf() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu_per_call = (cpu() - cpu_before) / len(latencies)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50": pick(0.50), "p99": pick(0.99), "cpu_us": cpu_per_call * 1e6}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="processes per server (gRPC, floor, granian)")
    parser.add_argument("--threads", type=int, default=64, help="stream threads per gRPC process")
    parser.add_argument("--unary-threads", type=int, default=4, help="unary call threads per gRPC process")
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--channels", type=int, help="gRPC client channels (connections); default 2 per worker, "
                                                      "1 with one worker")
    parser.add_argument("--no-sdk", action="store_true", help="skip the one-caller run through the SDK's clients")
    parser.add_argument("--pin-cpus", action="store_true",
                        help="gRPC servers (ours and the floor) pin worker i to CPU i, as grpcserver --pin-cpus")
    parser.add_argument("--breakdown", action="store_true",
                        help="also serve an Evaluate that only evaluates (no auth, validation, conversion, counting)")
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--evaluate-only-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pin-index", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        return floor_server(args.floor_server, args.threads, args.unary_threads, args.reuse_port, args.pin_index)
    if args.evaluate_only_server:
        return evaluate_only_server(args.evaluate_only_server, args.threads, args.unary_threads, args.reuse_port,
                                    args.pin_index)
    if args.channels is None:
        args.channels = 1 if args.workers == 1 else 2 * args.workers

    _common.use_own_database("bench-grpc")
    key = setup_data()

    python = sys.executable
    reuse = ["--reuse-port"] if args.workers > 1 else []
    pools = ["--threads", str(args.threads), "--unary-threads", str(args.unary_threads)]  # the same for both
    pin = lambda index: ["--pin-index", str(index)] if args.pin_cpus else []  # noqa: E731
    floor, ours, rest = _common.free_port(), _common.free_port(), _common.free_port()
    servers = {
        "gRPC floor (no-op)": (floor, [[python, __file__, "--floor-server", str(floor), *pools, *reuse, *pin(index)]
                                       for index in range(args.workers)]),
    }
    if args.breakdown:
        only = _common.free_port()
        servers["gRPC evaluate only"] = (only, [[python, __file__, "--evaluate-only-server", str(only), *pools, *reuse,
                                                 *pin(index)] for index in range(args.workers)])
    servers |= {
        "gRPC Evaluate": (ours, [[python, "manage.py", "grpcserver", "--host", "127.0.0.1", "--port", str(ours), *pools,
                                  "--metrics-port", "0", "--workers", str(args.workers),
                                  *(["--pin-cpus"] if args.pin_cpus else [])]]),
        "REST /api/evaluate": (rest, [_common.granian_command(rest, args.workers, extra=["--log-level", "warning"])]),
    }
    procs, pids = [], {}
    try:
        for name, (port, commands) in servers.items():
            for command in commands:
                procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL))
                pids.setdefault(name, []).append(procs[-1].pid)
            _common.wait_port(port)
        time.sleep(1.0)
        concurrencies = [int(c) for c in args.concurrency.split(",")]
        print(f"flags.v1 Evaluate, {args.duration:g}s x {args.rounds} interleaved rounds (median shown), "
              f"{args.workers} process(es) per server{' (gRPC ones pinned to a CPU each)' if args.pin_cpus else ''}, "
              f"{args.channels} gRPC channel(s), {os.cpu_count()} cores, "
              f"grpcio {__import__('grpc').__version__}, python client in one process")
        print(f"{'target':<22} {'c':>3} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'server CPU us/call':>19}")
        for c in concurrencies:
            runs = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, (port, _) in servers.items():
                    cpu = functools.partial(server_cpu_seconds, pids[name])
                    if name.startswith("REST"):
                        load = rest_load(port, key, c, args.duration, cpu)
                    else:
                        load = grpc_load(port, key, c, args.duration, cpu, channels=min(c, args.channels))
                    runs[name].append(asyncio.run(load))
            results = {}
            for name, rounds in runs.items():
                median = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
                results[name] = median
                print(f"{name:<22} {c:>3} {median['rps']:>9.0f} {median['p50']:>8.2f} {median['p99']:>8.2f} "
                      f"{median['cpu_us']:>19.0f}")
            floor = results["gRPC floor (no-op)"]["rps"]
            ours = results["gRPC Evaluate"]["rps"]
            rest = results["REST /api/evaluate"]["rps"]
            cpu = {name: result["cpu_us"] for name, result in results.items()}
            print(f"{'':<22} {c:>3}  Evaluate = {ours / floor:.0%} of the floor, {ours / rest:.2f}x REST evaluate; "
                  f"server CPU per call {cpu['gRPC Evaluate'] / cpu['REST /api/evaluate']:.2f}x REST's")
            if args.breakdown:
                print(f"{'':<22} {c:>3}  evaluate only = {results['gRPC evaluate only']['rps'] / floor:.0%} of the floor")
        if not args.no_sdk:
            sdk = {"SDK GrpcFlagClient": ("gRPC", "gRPC Evaluate"), "SDK REST client": ("REST", "REST /api/evaluate")}
            runs = {name: [] for name in sdk}
            for _ in range(args.rounds):
                for name, (transport, server) in sdk.items():
                    cpu = functools.partial(server_cpu_seconds, pids[server])
                    runs[name].append(sdk_load(transport, servers[server][0], key, args.duration, cpu))
            results = {name: sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2] for name, rounds in runs.items()}
            for name, median in results.items():
                print(f"{name:<22} {1:>3} {median['rps']:>9.0f} {median['p50']:>8.2f} {median['p99']:>8.2f} "
                      f"{median['cpu_us']:>19.0f}")
            grpc_sdk, rest_sdk = results["SDK GrpcFlagClient"], results["SDK REST client"]
            print(f"{'':<22} {1:>3}  through the SDK's clients, one caller: gRPC p50 "
                  f"{grpc_sdk['p50'] / rest_sdk['p50']:.2f}x REST's, {grpc_sdk['rps'] / rest_sdk['rps']:.2f}x its calls/s")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
