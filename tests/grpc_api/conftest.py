"""A real gRPC server (in this process, on a free port) over the test database, real channels to
it, and helpers to run `manage.py` processes against the same database.

The server's call threads use their own database connections, so these tests commit: they use a
transactional test database (with the seeded environments restored after each flush).
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import grpc
import pytest
from django.core.cache import cache
from django.db import connection

from flags import snapshot
from flags.live import ThreadWatcher
from flagsite.api.authentication import forget_api_key
from grpc_api.server import FlagServer
from grpc_api.stubs import flags_pb2, flags_pb2_grpc
from tests.api.conftest import SYSTEM, create_flag, make_key, user_with  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parent.parent.parent
TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    forget_api_key()
    snapshot.reset()
    cache.clear()
    yield
    forget_api_key()
    snapshot.reset()


@pytest.fixture
def server():
    """FlagServer on 127.0.0.1:<free port> with its own watcher; stopped (gracefully) after the test."""
    flag_server = FlagServer("127.0.0.1:0", threads=32, watcher=ThreadWatcher()).start()
    yield flag_server
    flag_server.stop(grace=2)


@pytest.fixture
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


@pytest.fixture
def stub(channel):
    return flags_pb2_grpc.FlagServiceStub(channel)


@pytest.fixture
def sdk_key(transactional_db):
    return make_key("sdk", environment="production")


def auth(key):
    return (("authorization", f"Bearer {key}"),)


def rpc_error(call, *args, **kwargs):
    """The grpc.RpcError a call raises (the test fails if it succeeds)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


class StreamReader:
    """Reads a server stream in a thread, stamping each message with its arrival time."""

    def __init__(self, call):
        self.call = call
        self.messages = Queue()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for message in self.call:
                self.messages.put((time.monotonic(), time.time(), message))
        except grpc.RpcError as error:
            self.error = error
        self.messages.put(None)

    def next(self, timeout=5.0):
        item = self.messages.get(timeout=timeout)
        assert item is not None, f"stream ended: {self.error!r}"
        return item

    def nothing_within(self, seconds):
        try:
            item = self.messages.get(timeout=seconds)
        except Empty:
            return True
        self.messages.put(item)
        return False

    def close(self):
        self.call.cancel()
        self.thread.join(5)


def process_env():
    """Environment for a manage.py process that must use this test's database (and Redis)."""
    settings = connection.settings_dict
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="flagsite.settings", PYTHONUNBUFFERED="1")
    if settings["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{Path(settings['NAME']).resolve()}"
    else:
        user = settings["USER"] or ""
        password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
        at = "@" if user else ""
        env["DATABASE_URL"] = (f"postgres://{user}{password}{at}{settings['HOST'] or '127.0.0.1'}:"
                               f"{settings['PORT'] or 5432}/{settings['NAME']}")
    return env


def manage(*args, **kwargs):
    return subprocess.run([sys.executable, str(REPO / "manage.py"), *args], env=process_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=60, **kwargs)


def wait_serving(port, timeout=60.0):
    """The health service's status once it answers: polled, with a deadline generous enough for a
    process importing Django on a machine busy with other tests."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        health = health_pb2_grpc.HealthStub(chan)
        while time.monotonic() < deadline:
            try:
                return health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"no gRPC server answered on port {port} within {timeout}s")


__all__ = ["flags_pb2", "flags_pb2_grpc"]
