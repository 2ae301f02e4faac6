"""`manage.py grpcserver` as a real process: health, reflection, evaluation, live changes from this
(other) process, graceful SIGTERM, and --workers sharing one port."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flags import services
from flags.selectors import flag_get

from tests.servers import free_port

from .conftest import (REPO, SYSTEM, TRANSACTIONAL, StreamReader, auth, create_flag, flags_pb2, flags_pb2_grpc,
                       process_env, wait_serving)

pytestmark = TRANSACTIONAL


def start(*args):
    port = free_port()
    process = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "grpcserver", "--host", "127.0.0.1",
                                "--port", str(port), *args], env=process_env(), cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_serving(port) == health_pb2.HealthCheckResponse.SERVING
    except AssertionError:
        process.kill()
        raise AssertionError(process.communicate()[1][-3000:])
    return process, port


@pytest.fixture
def served(transactional_db):
    create_flag("checkout", states={"production": {"enabled": True, "rules": []}})
    process, port = start()
    yield process, port
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_process__health_reflection_evaluate_and_watch(served, sdk_key):
    process, port = served
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(service="flags.v1.FlagService"))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        assert {"flags.v1.FlagService", "grpc.health.v1.Health"} <= {s.name for s in answer.list_services_response.service}

        stub = flags_pb2_grpc.FlagServiceStub(channel)
        evaluation = stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="checkout", user_id="u1"), metadata=auth(sdk_key)).evaluation
        assert (evaluation.enabled, evaluation.reason, evaluation.environment) == (True, "STATIC", "production")

        # A change made in this process reaches the server process's stream within 100 ms
        reader = StreamReader(stub.WatchFlags(flags_pb2.WatchFlagsRequest(), metadata=auth(sdk_key)))
        assert reader.next()[2].type == "hello"
        started = time.monotonic()
        services.flag_kill(actor=SYSTEM, flag=flag_get("checkout"), reason="incident", environments=["production"])
        arrived, _, event = reader.next(timeout=3)
        assert (event.action, event.flag["killed"]) == ("killed", True)
        assert arrived - started < 0.100, f"{(arrived - started) * 1000:.1f} ms"
        evaluation = stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="checkout"), metadata=auth(sdk_key)).evaluation
        assert evaluation.reason == "KILLED"

        # SIGTERM: calls in flight complete; the stream ends with OK; the process exits 0
        outcomes, stop = [], threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="checkout"), metadata=auth(sdk_key), timeout=2)
                    outcomes.append("ok")
                except grpc.RpcError as error:
                    outcomes.append(error.code())
                    return

        workers = [threading.Thread(target=hammer) for _ in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
        stop.set()
        for worker in workers:
            worker.join(5)
        reader.thread.join(5)
        assert reader.error is None  # the watch stream was ended by the server, cleanly
        assert outcomes.count("ok") > 10
        # calls arriving after SIGTERM are refused (new calls: CANCELLED while the connection drains,
        # then UNAVAILABLE); nothing else, e.g. no INTERNAL / UNKNOWN from a call cut off mid-way
        assert set(outcomes) <= {"ok", grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, set(outcomes)
        assert "stopped" in process.stdout.read()


def test_workers__share_one_port_and_stop_together(sdk_key):
    create_flag("checkout", states={"production": {"enabled": True, "rules": []}})
    process, port = start("--workers", "2")
    try:
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
        answered = 0
        for _ in range(20):  # new connections: the kernel spreads them over both workers
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                stub = flags_pb2_grpc.FlagServiceStub(channel)
                answered += stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="checkout"), metadata=auth(sdk_key)).evaluation.enabled
        assert answered == 20
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        for pid in children:
            assert subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0  # gone
    finally:
        if process.poll() is None:
            process.kill()


def test_workers__pin_cpus_puts_worker_i_on_cpu_i(sdk_key):
    create_flag("checkout", states={"production": {"enabled": True, "rules": []}})
    process, port = start("--workers", "2", "--pin-cpus")
    try:
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2
        allowed = sorted(os.sched_getaffinity(0))
        expected = sorted([[(allowed[0],)], [(allowed[1 % len(allowed)],)]])
        # Health answers once one worker serves; the other may still be importing Django before it
        # pins itself: polled until both are pinned (or 60 s), then compared.
        deadline = time.monotonic() + 60
        while (pinned := thread_affinities(children)) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pinned == expected, pinned
        assert not os.sched_getaffinity(process.pid) < set(allowed)  # the supervisor itself stays free
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = flags_pb2_grpc.FlagServiceStub(channel)
            assert stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="checkout"), metadata=auth(sdk_key)).evaluation.enabled
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert process.stdout.read().count(", cpu ") == 2
    finally:
        if process.poll() is None:
            process.kill()


def thread_affinities(pids):
    """Per process, the distinct CPU sets of all its threads (grpcio's, the watcher's, not just the
    main thread): [[(0,)], [(1,)]] once two workers are pinned to CPUs 0 and 1."""
    found = []
    for pid in pids:
        cpus = set()
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                cpus.add(tuple(sorted(os.sched_getaffinity(int(tid)))))
            except ProcessLookupError:  # a thread that ended since the listing
                pass
        found.append(sorted(cpus))
    return sorted(found)


def recent_calls_answered(outcomes, count=20):
    return len(outcomes) >= count and all(ok for _, ok in outcomes[-count:])


def test_workers__a_killed_worker_is_started_again_and_calls_answer_within_seconds(sdk_key):
    """SIGKILL of one worker under load: the supervisor starts a new one (it used to stop every
    worker and exit); calls on the connections the dead worker held fail, and within seconds
    every call answers again."""
    create_flag("checkout", states={"production": {"enabled": True, "rules": []}})
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe nobody reads: a full pipe would block the writers
    process = subprocess.Popen([sys.executable, str(REPO / "manage.py"), "grpcserver", "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "2"], env=process_env(), cwd=REPO,
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    outcomes, stop = [], threading.Event()

    def load():  # a new connection per call: the kernel spreads them over the live workers
        while not stop.is_set():
            with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                try:
                    answer = flags_pb2_grpc.FlagServiceStub(channel).Evaluate(
                        flags_pb2.EvaluateRequest(flag_id="checkout"), metadata=auth(sdk_key), timeout=2)
                    outcomes.append((time.monotonic(), answer.evaluation.enabled))
                except grpc.RpcError:
                    outcomes.append((time.monotonic(), False))

    def workers():
        return set(subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split())

    clients = [threading.Thread(target=load) for _ in range(2)]
    try:
        assert wait_serving(port) == health_pb2.HealthCheckResponse.SERVING
        before = workers()
        assert len(before) == 2
        for client in clients:
            client.start()
        time.sleep(1)
        victim = sorted(before)[0]
        os.kill(int(victim), signal.SIGKILL)
        killed = time.monotonic()
        while not (victim not in workers() and recent_calls_answered(outcomes)) and time.monotonic() < killed + 15:
            time.sleep(0.1)
        recovered = time.monotonic()
        time.sleep(2)
        stop.set()
        for client in clients:
            client.join(10)
        assert process.poll() is None and len(workers()) == 2 and victim not in workers()  # a new worker serves
        failed = sum(not ok for _, ok in outcomes)
        after = [ok for at, ok in outcomes if at > recovered]
        print(f"{len(outcomes)} calls, {failed} failed; all answering again {recovered - killed:.1f}s after the kill")
        assert recovered - killed < 15
        assert len(after) >= 10 and all(after)
        process.send_signal(signal.SIGTERM)  # the new worker stops with the rest
        assert process.wait(20) == 0
    except AssertionError as failure:  # with what the servers said
        log.seek(0)
        raise AssertionError(f"{failure}\n{log.read()[-3000:]}") from None
    finally:
        stop.set()
        for client in clients:
            if client.is_alive():
                client.join(10)
        if process.poll() is None:
            for pid in [*workers(), process.pid]:
                os.kill(int(pid), signal.SIGKILL)
        log.close()
