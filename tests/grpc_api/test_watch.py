"""WatchFlags: the WebSocket's change events over a gRPC stream, fast, from any process, resumable."""

import time

import grpc
import pytest

from audit.models import AuditEntry
from flags import services
from flags.selectors import flag_get
from flags.snapshot import get_snapshot

from .conftest import SYSTEM, TRANSACTIONAL, StreamReader, auth, create_flag, flags_pb2, manage, rpc_error

pytestmark = TRANSACTIONAL


@pytest.fixture
def flag(transactional_db):
    return create_flag("checkout", states={env: {"enabled": True, "rules": []}
                                           for env in ("development", "staging", "production")})


def watch(stub, key, **kwargs):
    return StreamReader(stub.WatchFlags(flags_pb2.WatchFlagsRequest(**kwargs), metadata=auth(key)))


def hello(reader):
    _, _, message = reader.next()
    assert message.type == "hello" and message.environment == "production"
    return message.version


def test_kill__reaches_the_stream_within_100ms_and_evaluations_agree(flag, stub, sdk_key):
    reader = watch(stub, sdk_key)
    version = hello(reader)
    assert reader.nothing_within(0.3)  # nothing happens: nothing arrives
    # When the flag is killed through the service
    started = time.monotonic()
    services.flag_kill(actor=SYSTEM, flag=flag_get("checkout"), reason="incident 42", environments=["production"])
    arrived, _, event = reader.next(timeout=2)
    # Then the event arrives within 100 ms, complete, and Evaluate already answers KILLED
    assert arrived - started < 0.100, f"{(arrived - started) * 1000:.1f} ms"
    assert (event.type, event.action, event.environment) == ("flag.changed", "killed", "production")
    assert event.version > version
    assert event.flag["key"] == "checkout" and event.flag["killed"] is True
    evaluation = stub.Evaluate(flags_pb2.EvaluateRequest(flag_id="checkout"), metadata=auth(sdk_key)).evaluation
    assert (evaluation.enabled, evaluation.reason) == (False, "KILLED")
    reader.close()


def test_kill_switch_command_in_another_process__reaches_the_stream_within_100ms(flag, stub, sdk_key):
    reader = watch(stub, sdk_key)
    hello(reader)
    # When `manage.py kill_switch` runs as its own process (no shared in-process state)
    done = manage("kill_switch", "checkout", "--reason", "from the CLI", "-e", "production")
    assert done.returncode == 0, done.stderr
    _, arrived_wall, event = reader.next(timeout=3)
    # Then the event arrives within 100 ms of the write (the audit entry is stamped before commit)
    entry = AuditEntry.objects.filter(action="flag.killed", target_key="checkout").latest("id")
    latency = arrived_wall - entry.created_at.timestamp()
    assert 0 <= latency < 0.100, f"{latency * 1000:.1f} ms"
    assert (event.action, event.flag["key"], event.flag["killed"]) == ("killed", "checkout", True)
    reader.close()


def test_other_environments_changes__not_sent(flag, stub, sdk_key):
    reader = watch(stub, sdk_key)
    hello(reader)
    services.flag_kill(actor=SYSTEM, flag=flag_get("checkout"), reason="staging only", environments=["staging"])
    services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=False)
    _, _, event = reader.next(timeout=2)
    assert (event.action, event.environment, event.flag["enabled"]) == ("toggled", "production", False)
    assert reader.nothing_within(0.3)
    reader.close()


def seen_by_server(server, environment="production", timeout=2.0):
    """Wait until the server's watcher has taken in the environment's current version."""
    current = get_snapshot(environment).version
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        payload = server.watcher.feed.current(environment)
        if payload and payload["version"] >= current:
            return current
        time.sleep(0.01)
    raise AssertionError("the server's watcher did not catch up")


def test_resume_by_version__replays_what_was_missed_in_order(flag, server, stub, sdk_key):
    first = watch(stub, sdk_key)
    seen = hello(first)
    first.close()
    # While disconnected: a toggle, a new flag, a kill (each taken in by the server's watcher)
    services.flag_toggle(actor=SYSTEM, flag=flag_get("checkout"), environment="production", enabled=False)
    seen_by_server(server)
    create_flag("banner", states={"production": {"enabled": True, "rules": []}})
    seen_by_server(server)
    services.flag_kill(actor=SYSTEM, flag=flag_get("banner"), reason="r", environments=["production"])
    current = seen_by_server(server)
    # When resuming from the version seen before
    resumed = watch(stub, sdk_key, since_version=seen)
    assert hello(resumed) == current
    missed = [resumed.next()[2] for _ in range(3)]
    assert [(e.action, e.flag["key"]) for e in missed] == [("toggled", "checkout"), ("created", "banner"),
                                                          ("killed", "banner")]
    assert [e.version for e in missed] == sorted(e.version for e in missed) and missed[-1].version == current
    assert resumed.nothing_within(0.3)  # and nothing twice
    # And a live change after the replay still arrives
    services.flag_restore(actor=SYSTEM, flag=flag_get("banner"), environments=["production"])
    assert resumed.next(timeout=2)[2].action == "restored"
    resumed.close()


def test_resume__current_version__nothing_replayed(flag, stub, sdk_key):
    current = get_snapshot("production").version
    reader = watch(stub, sdk_key, since_version=current)
    assert hello(reader) == current
    assert reader.nothing_within(0.3)
    reader.close()


def test_resume__version_older_than_history__one_full_snapshot(flag, stub, sdk_key):
    reader = watch(stub, sdk_key, since_version=-5)  # before anything this server remembers
    hello(reader)
    _, _, event = reader.next()
    assert event.type == "snapshot" and event.environment == "production"
    assert event.snapshot["environment"] == "production"
    assert [f["key"] for f in event.snapshot["flags"]] == ["checkout"]
    assert int(event.snapshot["version"]) == event.version == get_snapshot("production").version
    reader.close()


def test_server_stop__ends_streams_cleanly_and_refuses_new_ones(flag, server, stub, sdk_key):
    reader = watch(stub, sdk_key)
    hello(reader)
    server.stop(grace=2)
    reader.thread.join(3)
    assert not reader.thread.is_alive()
    assert reader.error is None  # the stream finished with OK, not an abort
    error = rpc_error(stub.Evaluate, flags_pb2.EvaluateRequest(flag_id="checkout"), metadata=auth(sdk_key), timeout=1)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
