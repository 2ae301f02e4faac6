"""A primary and two relays as real processes: relay A follows the primary, relay B follows relay A
(a chain). Built once per module (starting five servers per test would cost minutes): the data is
written through the services and committed outside any test transaction, and the module's
teardown restores the seeded database as serialized_rollback does."""

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from django.db import connection

from audit.actor import Actor
from flags import services
from flags.models import Environment
from tests.servers import free_port, start_relay, start_web

SYSTEM = Actor.system("relay-tests")
RELAY_ENV = {"FLAGS_ANALYTICS_FLUSH_SECONDS": "0.3", "FLAGS_RELAY_FLUSH_SECONDS": "0.3",
             "FLAGS_RELAY_BACKOFF_MAX": "0.5", "FLAGS_RELAY_STALE_SECONDS": "1", "FLAGS_WS_PING_SECONDS": "1",
             "FLAGS_API_KEY_CACHE_SECONDS": "5"}


def wait_until(check, timeout=10.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def health(server):
    try:
        return httpx.get(f"{server.http_url}/api/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return {}


def wait_synced(server, timeout=30.0):
    return wait_until(lambda: health(server).get("status") == "ok" and health(server), timeout,
                      message=f"relay {server.http_url} to sync")


class Topology:
    pass


def load_vectors():
    """Every shared vector file's segments and flags in production (as tests/api/test_vectors_rest.py
    loads one file; their keys do not collide); returns the cases that can run through the API."""
    import json

    from tests.api.test_vectors_rest import FILES, load

    cases = []
    for path in FILES:
        document = json.loads(path.read_text())
        refused = load(document, path.stem)
        cases += [case for case in document["cases"] if (path.stem, case["flagId"]) not in refused]
    return cases


@pytest.fixture(scope="module")
def db_access(request, django_db_setup, django_db_blocker):
    """The test database, committed writes (no test transaction). pytest-django sets the database up
    only when a collected test carries the django_db marker (every test here runs against live
    processes instead): when nothing did, set it up here the way Django's runner does."""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        created = None
        if str(connection.settings_dict["NAME"]) != str(connection.creation._get_test_db_name()):
            created = setup_databases(verbosity=0, interactive=False, aliases={"default"},
                                      serialized_aliases={"default"},
                                      keepdb=request.config.getoption("reuse_db", False))
        else:
            _restore_seed()  # a transactional test before this module may have left the tables empty
        try:
            yield
        finally:
            if created is None:
                _restore_seed()
            else:
                teardown_databases(created, verbosity=0, keepdb=request.config.getoption("reuse_db", False))


def _restore_seed():
    """Empty the tables and load the serialized seed (environments, projects): serialized_rollback."""
    from django.core.management import call_command

    # as serialized_rollback does: no post_migrate rows (content types, permissions), the seed has them
    call_command("flush", interactive=False, verbosity=0, allow_cascade=connection.vendor == "postgresql",
                 inhibit_post_migrate=True)
    contents = getattr(connection, "_test_serialized_contents", None)
    if contents:
        connection.creation.deserialize_db_from_string(contents)


@contextmanager
def stopped_on_error(*servers):
    try:
        yield
    except BaseException:
        for server in servers:
            server.stop()
        raise


@pytest.fixture(scope="module")
def topology(db_access, tmp_path_factory):
    """The three servers boot at once (a relay whose upstream is not up yet retries with backoff)
    while this process loads the vectors into the database; then every relay is waited for."""
    from flags import snapshot
    from flagsite.api.authentication import forget_api_key

    snapshot.reset()
    forget_api_key()
    top = Topology()
    top.production = Environment.objects.get(key="production")
    top.sdk_key = services.api_key_create(actor=SYSTEM, name="relay sdk", kind="sdk", environment=top.production)[1]
    top.relay_token = services.api_key_create(actor=SYSTEM, name="relay A", kind="relay",
                                              relay_environments=["production"])[1]
    services.flag_create(actor=SYSTEM, key="relay-flag", name="relay flag",
                         states={env: {"enabled": True, "rules": []} for env in ("development", "staging", "production")})
    top.tmp = tmp_path_factory.mktemp("relay")
    top.logs = {name: open(top.tmp / f"{name}.log", "w") for name in ("primary", "a", "b")}
    ports = {name: free_port() for name in ("primary", "a", "b")}
    top.a_grpc = free_port()
    upstream = {"a": f"http://127.0.0.1:{ports['primary']}", "b": f"http://127.0.0.1:{ports['a']}"}
    with ThreadPoolExecutor(3) as pool:
        starting = [
            pool.submit(start_web, port=ports["primary"], output=top.logs["primary"], FLAGS_WS_PING_SECONDS="1"),
            pool.submit(start_relay, upstream["a"], top.relay_token, port=ports["a"], grpc_port=top.a_grpc,
                        output=top.logs["a"], snapshot_file=top.tmp / "a-snapshot.json", **RELAY_ENV),
            pool.submit(start_relay, upstream["b"], top.relay_token, port=ports["b"], output=top.logs["b"],
                        **RELAY_ENV),
        ]
        top.vectors = load_vectors()
        servers = []
        errors = []
        for future in starting:
            try:
                servers.append(future.result())
            except Exception as exc:
                errors.append(exc)
    top.primary, top.a, top.b = servers if not errors else (None, None, None)
    with stopped_on_error(*servers):
        if errors:
            raise errors[0]
        version = Environment.objects.get(key="production").version
        for relay in (top.a, top.b):
            wait_synced(relay)
            wait_until(lambda: health(relay)["relay"]["environments"].get("production") == version, 10,
                       message="relays at the primary's version")
    top.servers = servers
    yield top
    for server in reversed(top.servers):
        server.stop()
    for log in top.logs.values():
        log.close()
