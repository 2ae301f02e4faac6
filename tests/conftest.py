"""Shared fixtures. The three environments exist through the data migration; flags and segments
are built through the services, as users would."""

from collections import Counter

import pytest
from django.core.cache import cache

from audit.actor import Actor
from audit.models import AuditEntry
from flags import services, snapshot
from flags.models import Environment, Flag, FlagState
from segments.models import Segment


MISSING_TOOLS = pytest.StashKey()


def pytest_collection_modifyitems(config, items):
    """Tests marked `needs(tool)` whose tool is missing are deselected, not failed (tests/tools.py)."""
    from tests import tools

    kept, deselected, counts = [], [], Counter()
    for item in items:
        absent = {name for marker in item.iter_markers("needs") for name in marker.args if tools.missing(name)}
        counts.update(absent)
        (deselected if absent else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    config.stash[MISSING_TOOLS] = counts


def pytest_terminal_summary(terminalreporter, config):
    """One line naming every missing tool and the package that provides it."""
    from tests.tools import TOOLS

    counts = config.stash.get(MISSING_TOOLS, Counter())
    if counts:
        parts = [f"{name} ({count} tests; {TOOLS[name][1]})" for name, count in sorted(counts.items())]
        terminalreporter.write_line("not run, missing on this machine: " + ", ".join(parts)
                                    + "; scripts/test installs them when run as root with apt-get", yellow=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """PostgreSQL: the audit table refuses TRUNCATE (audit/migrations/0005) unless the session
    allows it; the test database allows it, for Django's flush between transactional tests."""
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f'ALTER DATABASE "{connection.settings_dict["NAME"]}" SET flagsite.audit_truncate = \'allow\'')
            connection.close()  # the next connection starts with the setting


@pytest.fixture
def in_process_consumers(monkeypatch, settings):
    """For tests that run /ws consumers in this process (asyncio.run + channels' communicator): a
    watcher of their own and the in-memory channel layer, so no task or Redis connection of an
    earlier test's loop is shared (cancelling a Redis receive bound to another test's loop hung the
    run). Afterwards the threads that did their database work (the watcher's poll thread, asgiref's
    one thread for thread-sensitive code) close their connections: left open, PostgreSQL could not
    drop the test database ("being accessed by other users"). Yields the watcher."""
    import asyncio

    from asgiref.sync import sync_to_async
    from channels.layers import channel_layers
    from django.db import connections

    from flags import consumers
    from flags.live import Watcher

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    watcher = Watcher()
    monkeypatch.setattr(consumers, "watcher", watcher)
    yield watcher
    channel_layers.backends.clear()
    watcher._executor.submit(connections.close_all).result(timeout=10)
    watcher._executor.shutdown()
    asyncio.run(sync_to_async(connections.close_all)())


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test starts with no cached or compiled snapshot (database rows roll back between tests)."""
    cache.clear()
    snapshot.reset()
    yield
    snapshot.reset()


@pytest.fixture(autouse=True)
def _rate_limiter_trusts_the_cache():
    """After a cache failure the limiter skips the cache for a while (flagsite/api/throttling.py):
    one test's broken cache must not switch rate limits off for the next."""
    from flagsite.api import throttling

    throttling._cache_down_until = 0.0
    throttling._blocked.clear()  # addresses blocked for failed authentications, this process's memo
    throttling.allowance.reset()  # rate-limit units this process holds: the shared counters were just cleared
    yield
    throttling._cache_down_until = 0.0
    throttling._blocked.clear()


@pytest.fixture(autouse=True)
def _analytics_counters(settings):
    """Evaluations are counted in memory; no background flush thread: tests that need rollups flush."""
    from analytics import counters

    settings.FLAGS_ANALYTICS_AUTOFLUSH = False
    counters.recorder.reset()
    yield
    counters.recorder.reset()


@pytest.fixture
def user(django_user_model):
    """Alice, site staff: she holds the flag and segment permissions the services check
    (projects/policy.py), so tests of the services act as someone allowed to write. Given by
    bulk_create, which sends no m2m signal: no user.permissions_changed entry in the audit log that
    the tests count."""
    from django.contrib.auth.models import Permission

    alice = django_user_model.objects.create_user(username="alice", password="pw-alice-123")
    through = django_user_model.user_permissions.through
    through.objects.bulk_create([through(user_id=alice.pk, permission=perm) for perm in
                                 Permission.objects.filter(content_type__app_label__in=("flags", "segments"))])
    return alice


@pytest.fixture
def actor(user):
    return Actor.for_user(user, request_id="req-1", ip="127.0.0.1")


@pytest.fixture
def make_flag(actor):
    def make(key="new-checkout", *, name=None, enabled=True, rules=None, environments=None, **kwargs):
        envs = environments or [e.key for e in Environment.objects.all()]
        return services.flag_create(
            actor=actor, key=key, name=name or key.replace("-", " ").title(),
            states={env: {"enabled": enabled, "rules": rules or []} for env in envs}, **kwargs)
    return make


@pytest.fixture
def flag(make_flag):
    return make_flag()


class World:
    """Counts that a write must (or must not) change: rows, audit entries, environment versions."""

    @staticmethod
    def snapshot():
        return {
            "flags": Flag.objects.count(),
            "segments": list(Segment.objects.order_by("pk").values_list("key", "conditions")),
            "states": list(FlagState.objects.order_by("pk").values_list("enabled", "rules", "killed", "version")),
            "audit": AuditEntry.objects.count(),
            "versions": dict(Environment.objects.values_list("key", "version")),
        }


@pytest.fixture
def world():
    return World
