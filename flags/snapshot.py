"""The one bridge from the ORM to the engine.

Each process keeps a compiled `engine.Snapshot` per environment of each project, named by the
environment's ref (projects/scope.py: "production" in the default project, "team.production" in
another), which is what API keys resolve to: evaluation needs no query to find its project. `get_snapshot()` returns it with
no I/O while it is fresh; at most every FLAGS_MAX_STALENESS_MS it re-reads the environment's
version (one indexed row) and, when the version moved, reloads the serialized payload from the
shared cache, or builds it from the database when the cache lacks that version. After commit,
`environment_changed()` makes this process re-check at once (read-your-writes in the writing
process) and `share_payload()` stores the new payload in the cache (flags/publish.py, off the
request path).

A hung cache (Redis stopped, not gone: each call waits out the 1 s socket timeout) must not stall
every reload behind `_lock`: after a cache error, reloads skip the cache for CACHE_RETRY_SECONDS
and read the database, the source of truth.
"""

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver
from feature_flag_client import engine

from flags.errors import ValidationFailed
from flags.models import Environment, FlagState
from flags.selectors import engine_state
from projects import scope
from segments.selectors import segment_rules_map

CACHE_KEY = "flags:snapshot:{}"
logger = logging.getLogger(__name__)

# Other apps' parts of the payload, so flags need not know them: {name: fn(project, environment
# key) -> JSON}, and hooks called as fn(environment ref, old payload or None, new payload) when a
# process loads a newer version. experiments/apps.py adds "experiments" ({flag key: start, epoch
# seconds} of those running) and restarts the exposure table when it changes.
payload_parts = {}
reload_hooks = []


@dataclass
class _Entry:
    version: int
    payload: dict
    snapshot: object
    checked_at: float
    changed_at: float = float("-inf")  # a write committed here then; older checks no longer count


_entries = {}
_lock = threading.Lock()


def _relay():
    """relay/state.py's RelayState in relay mode (the snapshot source that follows an upstream),
    else None: the ORM is the source."""
    if not getattr(settings, "FLAGS_RELAY", ""):
        return None
    from relay.state import state

    return state


def _version(environment_key):
    relay = _relay()
    if relay is not None:
        return relay.version(environment_key)
    project, key = scope.split(environment_key)
    return Environment.all_objects.filter(project_id=project, key=key).values_list("version", flat=True).first()


def build_payload(environment_key):
    """The snapshot payload from the database: what /api/sdk/snapshot serves and the engine compiles.

    The version and the rows are separate queries (each its own snapshot under READ COMMITTED), so
    a write committed between them would label newer rows with the older version; every write bumps
    the version in its own transaction, so an unchanged version after the rows proves they match it.
    """
    relay = _relay()
    if relay is not None:
        payload = relay.payload(environment_key)
        if payload is None:
            raise ValidationFailed({"environment": [f"Unknown environment '{scope.split(environment_key)[1]}'."]})
        return payload
    version = _version(environment_key)
    project, key = scope.split(environment_key)
    for _attempt in range(5):
        if version is None:
            raise ValidationFailed({"environment": [f"Unknown environment '{key}'."]})
        states = (
            FlagState.objects.select_related("flag")
            .filter(environment__project_id=project, environment__key=key, flag__archived=False)
            .order_by("flag__key")
        )
        payload = {
            "environment": environment_key,
            "version": version,
            "flags": [engine_state(state) for state in states],
            "segments": segment_rules_map(project=project),
            **{name: part(project, key) for name, part in payload_parts.items()},
        }
        version_after = _version(environment_key)
        if version_after == version:
            return payload
        version = version_after  # writes landed meanwhile: read again
    return payload  # a write storm: serve these rows; the next poll sees the newer version


def compile_payload(payload):
    return engine.compile_snapshot(
        flags=payload["flags"],
        segments=payload["segments"],
        environment=payload["environment"],
        version=payload["version"],
    )


CACHE_RETRY_SECONDS = 5.0
_cache_down_until = 0.0


def _cache_failed(exc, what):
    global _cache_down_until
    _cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS
    logger.warning("cache unavailable, %s (retried in %.0f s): %s", what, CACHE_RETRY_SECONDS, exc)


def share_payload(payload):
    """Put a payload in the shared cache (always tried: callers are off the request path)."""
    global _cache_down_until
    try:
        cache.set(CACHE_KEY.format(payload["environment"]), payload, timeout=None)
        _cache_down_until = 0.0
    except Exception as exc:  # Redis down: the database stays the source of truth
        _cache_failed(exc, "snapshot not shared")


def store_payload(environment_key):
    """Rebuild the payload from the database and put it in the shared cache (if it answers)."""
    payload = build_payload(environment_key)
    if _relay() is None and time.monotonic() >= _cache_down_until:
        share_payload(payload)
    return payload


def _cached_payload(environment_key):
    if time.monotonic() < _cache_down_until:
        return None
    try:
        return cache.get(CACHE_KEY.format(environment_key))
    except Exception as exc:
        _cache_failed(exc, "building the snapshot from the database")
        return None


def _read_staleness():
    return getattr(settings, "FLAGS_MAX_STALENESS_MS", 100) / 1000.0


# Read once, not on every evaluation: a settings lookup was ~5% of a warm gRPC Evaluate.
_staleness = _read_staleness()


@receiver(setting_changed, dispatch_uid="flags.snapshot.staleness")
def _staleness_changed(setting, **kwargs):
    global _staleness
    if setting == "FLAGS_MAX_STALENESS_MS":
        _staleness = _read_staleness()


def _entry(environment_key):
    entry = _entries.get(environment_key)
    now = time.monotonic()
    if entry is not None and now - entry.checked_at < _staleness:
        return entry
    with _lock:
        entry = _entries.get(environment_key)
        if entry is not None and now - entry.checked_at < _staleness:
            return entry
        try:
            return _reload(environment_key, entry, now)
        except DatabaseError:
            if entry is None:
                raise  # nothing to serve yet: the API answers 503
            logger.warning("database unavailable: serving %s at version %s", environment_key, entry.version)
            entry.checked_at = now  # try again after one staleness interval, not on every request
            return entry


def _reload(environment_key, entry, now):
    """The entry at the database's current version (caller holds _lock)."""
    version = _version(environment_key)
    if version is None:
        _entries.pop(environment_key, None)
        raise ValidationFailed({"environment": [f"Unknown environment '{scope.split(environment_key)[1]}'."]})
    if entry is not None and entry.version == version:
        entry.checked_at = now
        return entry
    payload = None if _relay() is not None else _cached_payload(environment_key)
    if not payload or payload.get("version") != version:
        payload = store_payload(environment_key)
    old = entry
    entry = _Entry(payload["version"], payload, compile_payload(payload), now)
    _entries[environment_key] = entry
    for hook in reload_hooks:
        hook(environment_key, old.payload if old is not None else None, payload)
    return entry


def get_snapshot(environment_key):
    """The compiled snapshot of one environment; no SQL while it is fresh."""
    return _entry(environment_key).snapshot


def fresh_snapshot(environment_key):
    """The compiled snapshot when it needs no re-check now (no I/O at all), else None: for callers
    on an event loop, which hand the request to a thread instead."""
    entry = _entries.get(environment_key)
    if entry is not None and time.monotonic() - entry.checked_at < _staleness:
        return entry.snapshot
    return None


def fresh_payload(environment_key):
    """snapshot_payload() when it needs no re-check now, else None (as fresh_snapshot)."""
    entry = _entries.get(environment_key)
    if entry is not None and time.monotonic() - entry.checked_at < _staleness:
        return entry.payload
    return None


def warm_up():
    """Compile every environment's snapshot now: a server process calls it before taking requests,
    or its first request pays it (0.8 s when a rule targets devices: the user-agent tables load)."""
    relay = _relay()
    if relay is not None:
        for environment in relay.versions():
            get_snapshot(environment)
        return
    for project, key in Environment.all_objects.values_list("project_id", "key"):
        get_snapshot(scope.ref(project, key))


def snapshot_payload(environment_key):
    """The serialized snapshot (environment, version, flags, segments) matching get_snapshot()."""
    return _entry(environment_key).payload


def snapshot_version(environment_key):
    return _entry(environment_key).version


def environment_changed(environment_key):
    """After a committed write: this process re-checks its copy on the next read (no I/O here)."""
    with _lock:  # after a reload in flight, which may have read the version before this commit
        entry = _entries.get(environment_key)
        if entry is not None:
            entry.checked_at = float("-inf")
            entry.changed_at = time.monotonic()


def refresh(environment_key):
    """Re-check now (not at the next staleness tick) and return the current payload: the watchers'
    way to make this process answer with a change before announcing it to clients."""
    entry = _entries.get(environment_key)
    if entry is not None:
        entry.checked_at = float("-inf")
    return _entry(environment_key).payload


def mark_checked(versions, checked_at):
    """A watcher just read these {environment: version}: entries at that version count as checked
    then, so request threads never re-check themselves (a query behind the lock and the GIL on
    every staleness tick halved gRPC throughput at 50 concurrent calls)."""
    for environment, version in versions.items():
        entry = _entries.get(environment)
        # a read that began before this process's last write saw the older version
        if entry is not None and entry.version == version and checked_at > max(entry.checked_at, entry.changed_at):
            entry.checked_at = checked_at


def reset():
    """Forget every process-local snapshot (tests; a database reset)."""
    global _cache_down_until
    with _lock:
        _entries.clear()
        _cache_down_until = 0.0
