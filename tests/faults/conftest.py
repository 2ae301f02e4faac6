"""Fault tests: a PRIVATE real PostgreSQL cluster and Redis server, started once per session on
free ports of 127.0.0.1 (never the shared :5432 / :6379 other tests and sessions use), which the
tests stop and restart while real servers (granian ASGI, `manage.py grpcserver`) and real clients run.

Every wait is bounded (WAIT seconds); both stores and every server process are stopped and their
files removed even when a test fails. Server logs go to files and are printed (captured, shown on
failure) when the test ends.
"""

import contextlib
import json
import os
import pwd
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
import redis

from tests.servers import free_port, manage, start_web, start_grpcserver

WAIT = 30.0  # the bound on every wait for a store or a server to come or go


def wait_until(predicate, timeout=WAIT, what="condition"):
    """predicate()'s first truthy value; an exception counts as "not yet". Fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the store or server is still coming back
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(0.05)


def _pg_bindir():
    found = sorted(Path(p).parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("fault tests need the PostgreSQL server binaries (initdb, pg_ctl) under "
                    "/usr/lib/postgresql/*/bin: install the postgresql package", pytrace=False)
    return max(found, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)


class PrivatePostgres:
    """A throwaway cluster in a temp dir (trust auth, 127.0.0.1 only, fsync off), run as the
    `postgres` OS user when we are root (PostgreSQL refuses to run as root)."""

    def __init__(self):
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/flagsite_faults"
        self.as_user, owner = [], None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("fault tests run as root need a `postgres` OS user to run PostgreSQL as", pytrace=False)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="flagsite-faults-pg-"))
        self.data = self.dir / "data"
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    def init(self):
        self._pg("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync",
                 "--no-instructions")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n")

    def _pg(self, tool, *args):
        command = [*self.as_user, str(self.bindir / tool), *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=WAIT + 10)
        if done.returncode:
            log = (self.dir / "server.log")
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}")

    def start(self):
        self._pg("pg_ctl", "-D", self.data, "-l", self.dir / "server.log", "-w", "-t", int(WAIT), "start")

    def stop(self):
        """Fast shutdown: open transactions roll back, every client is disconnected."""
        self._pg("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", int(WAIT), "stop")

    def running(self):
        return (self.data / "postmaster.pid").exists()

    def connect(self, dbname="flagsite_faults"):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname,
                               connect_timeout=5, autocommit=True)

    def query(self, sql, *params):
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def close(self):
        if self.running():
            try:
                self._pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", int(WAIT), "stop")
            except Exception as exc:  # still remove what we can
                print(f"private PostgreSQL did not stop: {exc}")
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """A redis-server child process (no persistence); stop() kills it like a crash, start()
    brings a fresh, empty one back on the same port."""

    def __init__(self, log_dir):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.fail("fault tests need redis-server on PATH: install the redis-server package", pytrace=False)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = Path(log_dir) / "redis.log"
        self.process = None

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.process.poll() is None and self.client().ping(), what=f"redis on {self.port}")

    def stop(self):
        self.process.kill()
        self.process.wait(timeout=WAIT)

    def running(self):
        return self.process is not None and self.process.poll() is None

    def close(self):
        if self.running():
            self.stop()


@pytest.fixture(scope="session")
def private_postgres():
    postgres = PrivatePostgres()
    try:
        postgres.init()
        postgres.start()
        with postgres.connect("postgres") as conn:
            conn.execute("CREATE DATABASE flagsite_faults")
        yield postgres
    finally:
        postgres.close()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory):
    store = PrivateRedis(tmp_path_factory.mktemp("redis"))
    try:
        store.start()
        yield store
    finally:
        store.close()


SETUP = """
import json
from django.contrib.auth import get_user_model
from audit.actor import Actor
from flags import services
from flags.models import Environment
actor = Actor.system("fault-tests")
admin = get_user_model().objects.create_superuser("faults-admin", "", "faults-admin-password")
token = services.api_key_create(actor=actor, name="faults", kind="management", user=admin)[1]
sdk = services.api_key_create(actor=actor, name="faults sdk", kind="sdk",
                              environment=Environment.objects.get(key="production"))[1]
print(json.dumps({"token": token, "sdk": sdk}))
"""


@pytest.fixture(scope="session")
def site(private_postgres):
    """The private database migrated, with a management token (superuser) and a production SDK key."""
    env = {"DATABASE_URL": private_postgres.url, "REDIS_URL": ""}
    for args in (("migrate", "--noinput"), ("shell", "-c", SETUP)):
        done = manage(*args, **env)
        assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def stores_up(private_postgres, private_redis):
    """Each test starts with both stores up (even after a test that failed mid-outage), Redis empty."""
    for store in (private_postgres, private_redis):
        if not store.running():
            store.start()
    private_redis.client().flushall()
    yield


def server_env(postgres, redis_store=None, **extra):
    """Environment for a server process on the private stores (no REDIS_URL: embedded cache,
    in-memory channel layer, eager Celery)."""
    return {"DATABASE_URL": postgres.url, "REDIS_URL": redis_store.url if redis_store else "",
            "CACHE_KEY_PREFIX": "faults", **extra}


@pytest.fixture
def servers(tmp_path):
    """start(kind, **env) -> a running web server (granian ASGI, "web") or grpcserver ("grpc"); all stopped at the end."""
    started = []

    def start(kind, **env):
        log = open(tmp_path / f"{kind}-{len(started)}.log", "w")
        try:
            server = (start_web if kind == "web" else start_grpcserver)(output=log, **env)
        except BaseException:
            log.close()
            print(Path(log.name).read_text()[-5000:])
            raise
        started.append((server, log))
        return server

    yield start
    for server, log in started:
        if server.process.poll() is None:
            server.stop()
        log.close()
        print(f"--- {Path(log.name).name} (exit {server.process.returncode}) ---")
        print(Path(log.name).read_text()[-5000:])


@pytest.fixture
def cleanup():
    """An ExitStack closed after the test (clients, streams, threads)."""
    with contextlib.ExitStack() as stack:
        yield stack


class Events:
    """What a live client received (WebSocket messages or gRPC watch events), in order."""

    def __init__(self):
        self.queue = queue.Queue()
        self.all = []

    def put(self, event):
        self.all.append(event)
        self.queue.put(event)

    def count(self, event_type):
        return sum(event.get("type") == event_type for event in self.all)

    def expect(self, flag_key, action, timeout=5.0):
        """The next flag.changed event for flag_key with this action, within timeout seconds."""
        deadline = time.monotonic() + timeout
        seen = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            seen.append(event)
            if event.get("type") == "flag.changed" and event["flag"]["key"] == flag_key and event["action"] == action:
                return event
        raise AssertionError(f"no {action} event for {flag_key} within {timeout}s; got {seen}")


def follow_ws(cleanup, url, key):
    """An SDK WebSocketClient on url, connected (hello received); its messages land in Events."""
    from feature_flag_client import WebSocketClient

    events = Events()
    client = WebSocketClient(url, api_key=key, min_backoff=0.05, max_backoff=0.5, daemon=True)
    client.on_message(events.put)
    client.connect()
    cleanup.callback(client.close)
    assert client.wait_connected(10), f"no hello from {url}: {client.last_error!r}"
    return events


def follow_grpc(cleanup, client):
    """A WatchFlags stream read in a thread; its events land in Events (hello first)."""
    events = Events()
    watch = client.watch()

    def read():
        try:
            for event in watch:
                events.put(event)
        except Exception as exc:  # the test's expect() reports what arrived
            events.put({"type": "stream-ended", "error": repr(exc)})

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    cleanup.callback(thread.join, 5)
    cleanup.callback(watch.cancel)
    assert events.queue.get(timeout=10)["type"] == "hello"
    return events


ONLY_U1 = [{"type": "user", "operator": "in", "value": ["u1"]}]  # the rule of each test's stable flag


def assert_answers(flag, *evaluate_functions):
    """flag (rule ONLY_U1) answers exactly as configured through each evaluate(flag, user)."""
    for evaluate in evaluate_functions:
        on, off = evaluate(flag, "u1"), evaluate(flag, "u2")
        assert (on["enabled"], on["reason"], off["enabled"], off["reason"]) == (
            True, "TARGETING_MATCH", False, "RULE_MISMATCH"), (on, off)


STATE_SQL = """
    SELECT s.enabled, s.killed, s.version FROM flags_flagstate s
    JOIN flags_flag f ON f.id = s.flag_id JOIN flags_environment e ON e.id = s.environment_id
    WHERE f.key = %s AND e.key = 'production'"""


def flag_row(postgres, key):
    """(enabled, killed, version) of the flag's production state, read straight from PostgreSQL."""
    return postgres.query(STATE_SQL, key)[0]


def audit_actions(postgres, key):
    return [row[0] for row in postgres.query(
        "SELECT action FROM audit_auditentry WHERE target_key = %s ORDER BY id", key)]


def verify_audit(postgres):
    done = manage("verify_audit", DATABASE_URL=postgres.url, REDIS_URL="")
    assert done.returncode == 0, done.stdout + done.stderr
