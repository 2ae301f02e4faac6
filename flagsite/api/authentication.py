"""API key authentication: SDK keys and management tokens.

Keys arrive as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Only the sha256 of a key is
stored; the lookup result (or the fact that it failed) is kept in a small in-process cache for
``FLAGS_API_KEY_CACHE_SECONDS`` (default 5 s), so a warm evaluation does no SQL at all. A revoked
key therefore stops working within that TTL in every process, and at once in the process that
revoked it when the revoke path calls ``forget_api_key``.

Callers that must not wait on the database (the fast lane on the event loop: ``cached_api_key``
with ``touch=False``) renew a busy key ahead of its expiry: past half its TTL, or when its
last_used_at stamp is due, one background lookup per key reloads it (and writes the stamp) while
the entry, still within its TTL, keeps answering. Without it every key expired under load every
TTL, and until one lookup refilled it each of its requests fell through to Django, each in a new
thread with a new database connection: p99 at c=50 of 31-88 ms on PostgreSQL against 8-18 ms with
the expiry out of the way (bench/rest.py's load).

When the database is unreachable, a key this process resolved before keeps working (its last good
lookup, re-tried every TTL) so evaluations go on answering from the snapshot; a key never seen
here answers 503, never 401. The price: a key revoked on another node just before an outage
stays valid in this process until the database answers again (revoking needs the database too).

Unknown keys are remembered apart (``_negative``, bounded, oldest dropped first), so a flood of
invalid keys can neither evict the valid ones nor their outage fallback. Failed lookups are
counted per client address (flagsite/api/throttling.py, FLAGS_AUTH_FAILURE_LIMIT): past the limit,
keys this process does not already know to be good are refused (AuthThrottled) before any lookup.
A successful warm authentication never touches the shared cache.
"""

import hashlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from audit.actor import client_ip
from flagsite.api import throttling

logger = logging.getLogger(__name__)
LAST_USED_WRITE_INTERVAL = 60.0  # seconds between last_used_at writes per key and process
_MAX_CACHED = 10_000  # valid keys cached per process (and as many unknown ones, apart)


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """``request.auth`` for a request authenticated by an API key."""

    id: int
    prefix: str
    kind: str  # "sdk" | "management" | "relay"
    environment: str | None  # environment ref (projects/scope.py), SDK keys only
    project: str | None = None  # the one project an SDK key, a relay token or a narrowed token works in
    environments: tuple = ()  # relay tokens: the environment refs it may read (empty: all of its project)

    @property
    def label(self):
        return f"apikey:{self.prefix}"


class SdkKeyUser:
    """``request.user`` for an SDK key: authenticated, but holds no model permission."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = id = None

    def __init__(self, principal):
        self.username = principal.label

    def has_perm(self, perm, obj=None):
        return False

    def has_perms(self, perms, obj=None):
        return False

    def __str__(self):
        return self.username


_cache = {}  # key hash -> (expires_at, renew_at, (user, principal)): valid keys only
_negative = OrderedDict()  # key hash -> expires_at: unknown or revoked keys, oldest first
_last_good = {}  # key hash -> (user, principal): served while the database is unreachable
_last_used = {}  # api key id -> monotonic time of the last last_used_at write
_lock = threading.Lock()
_generation = 0  # forget_api_key's count: a lookup that raced a forget is not cached
_renewing = set()  # key hashes with a background renewal queued or running
_renewals = None  # key hashes to renew, read by one daemon thread (made on first use and after a fork)


def hash_key(raw_key):
    return hashlib.sha256(raw_key.encode()).hexdigest()


def forget_api_key(key_hash=None):
    """Drop one cached key (or all of them) so a revoke takes effect in this process at once."""
    global _generation
    with _lock:
        _generation += 1
        if key_hash is None:
            _cache.clear()
            _negative.clear()
            _last_good.clear()
            _last_used.clear()
        else:
            _cache.pop(key_hash, None)
            _negative.pop(key_hash, None)
            _last_good.pop(key_hash, None)


def _relay_load(key_hash):
    """Relay mode: the key hashes the upstream shares (relay/state.py), never a query."""
    from relay.state import state

    entry = state.key(key_hash)
    if entry is None or entry.get("kind") not in ("sdk", "relay"):
        return None
    principal = ApiKeyPrincipal(id=entry["id"], prefix=entry["prefix"], kind=entry["kind"],
                                environment=entry.get("environment") if entry["kind"] == "sdk" else None,
                                project=entry.get("project"), environments=tuple(entry.get("environments") or ()))
    return SdkKeyUser(principal), principal


def principal_of(api_key):
    """The ApiKeyPrincipal of an SDK key or a relay token (environment preloaded)."""
    from projects import scope

    sdk = api_key.kind == "sdk"
    relay = api_key.kind == "relay"
    return ApiKeyPrincipal(
        id=api_key.pk,
        prefix=api_key.prefix,
        kind=api_key.kind,
        environment=scope.ref(api_key.environment.project_id, api_key.environment.key) if sdk else None,
        project=(api_key.environment.project_id if sdk
                 else api_key.project_id if (relay or api_key.narrowed) else None),
        environments=tuple(scope.ref(api_key.project_id, key) for key in api_key.relay_environments or ())
        if relay else (),
    )


def _load(key_hash):
    if getattr(settings, "FLAGS_RELAY", ""):
        return _relay_load(key_hash)
    from flags.models import ApiKey

    api_key = (
        ApiKey.all_objects.select_related("environment")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
    if api_key is None:
        return None
    principal = principal_of(api_key)
    if api_key.kind in ("sdk", "relay"):  # a relay token holds no model permission either
        return SdkKeyUser(principal), principal
    user = get_user_model().objects.filter(pk=api_key.user_id, is_active=True).first()
    if user is None:
        return None
    user.get_all_permissions()  # fill the permission cache now, so a cached user checks without SQL
    return user, principal


def resolve_api_key(raw_key, client_ip=None):
    """(user, principal) for a raw key, or None when unknown or revoked. Cached briefly.

    ``client_ip`` (an address, or a function returning it, called only when the key is not cached):
    failures are counted for it, and AuthThrottled is raised for it once over the limit."""
    key_hash = hash_key(raw_key)
    now = time.monotonic()
    hit = _cache.get(key_hash)
    if hit is not None and hit[0] > now:  # the warm path: no lock, no SQL, no shared cache
        _touch(hit[2][1].id, now)
        return hit[2]
    ip = client_ip() if callable(client_ip) else client_ip
    if ip and key_hash not in _last_good:  # a key known good here is never throttled
        throttling.check_auth_failures(ip)
    if _negative.get(key_hash, 0) > now:
        result = None
    else:
        result = _lookup(key_hash, now)
    if result is None:
        if ip:
            throttling.record_auth_failure(ip)
        return None
    _touch(result[1].id, now)
    return result


def cached_api_key(raw_key, touch=True):
    """(user, principal) for a key this process holds fresh in its cache, else None (no lookup,
    no failure counting: resolve_api_key does those). ``touch=False``, for callers that must not
    wait on the database: past half its TTL, or with its last_used_at stamp due, the key is
    renewed in the background (which writes the stamp) while this entry answers."""
    key_hash = hash_key(raw_key)
    hit = _cache.get(key_hash)
    now = time.monotonic()
    if hit is None or hit[0] <= now:
        return None
    api_key_id = hit[2][1].id
    if touch:
        _touch(api_key_id, now)
    elif now >= hit[1] or now - _last_used.get(api_key_id, -LAST_USED_WRITE_INTERVAL) >= LAST_USED_WRITE_INTERVAL:
        _renew_soon(key_hash)
    return hit[2]


def _renew_soon(key_hash):
    """Queue one background lookup of the key (none while one is queued or running)."""
    global _renewals
    with _lock:
        if key_hash in _renewing:
            return
        _renewing.add(key_hash)
        if _renewals is None:  # one thread: a renewal is rare (a busy key every half TTL), never a pile
            _renewals = queue.SimpleQueue()  # daemon: a lookup stuck on a lost database never holds up exit
            threading.Thread(target=_renew_forever, args=(_renewals,), name="api-key-renewal", daemon=True).start()
    _renewals.put(key_hash)


def _renew_forever(key_hashes):
    while True:
        key_hash = key_hashes.get()
        try:
            _renew(key_hash)
        finally:
            with _lock:
                _renewing.discard(key_hash)


def _renew(key_hash):
    close_old_connections()  # mid-burst, a kept connection: the same upkeep as a request's
    try:
        now = time.monotonic()
        result = _lookup(key_hash, now)
        if result is not None:
            _touch(result[1].id, now)
        if _renewals.empty():  # idle: hold no connection (nor keep a test database from being dropped)
            connections.close_all()
    except Exception:  # never seen here and the database is down: the entry expires, Django answers
        logger.warning("could not renew a cached API key", exc_info=True)


def _after_fork():
    global _renewals
    _renewals = None  # the parent's thread did not come along
    _renewing.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _lookup(key_hash, now):
    generation = _generation
    try:
        result = _load(key_hash)
    except DatabaseError:
        result = _last_good.get(key_hash)
        if result is None:
            raise  # never seen here: 503 (the API's handler), not a wrong 401
        logger.warning("database unavailable: serving API key %s from its last good lookup", result[1].prefix)
    ttl = getattr(settings, "FLAGS_API_KEY_CACHE_SECONDS", 5)
    with _lock:
        if generation != _generation:  # a revoke was forgotten while this looked the key up
            return result
        if result is None:
            _cache.pop(key_hash, None)
            _last_good.pop(key_hash, None)  # revoked (the database said so)
            _negative[key_hash] = now + ttl
            _negative.move_to_end(key_hash)
            while len(_negative) > _MAX_CACHED:
                _negative.popitem(last=False)
        else:
            _negative.pop(key_hash, None)
            if len(_cache) >= _MAX_CACHED:
                _cache.clear()  # the TTL cache only; _last_good (the outage fallback) stays
            _cache[key_hash] = (now + ttl, now + ttl / 2, result)
            _last_good[key_hash] = result
    return result


def _touch(api_key_id, now):
    if now - _last_used.get(api_key_id, -LAST_USED_WRITE_INTERVAL) < LAST_USED_WRITE_INTERVAL:
        return
    if getattr(settings, "FLAGS_RELAY", ""):  # a relay has no database: the upstream's key, not ours
        _last_used[api_key_id] = now
        return
    from flags.models import ApiKey

    _last_used[api_key_id] = now
    try:  # bookkeeping only: never fail a request (or an evaluation) because this write failed
        ApiKey.all_objects.filter(pk=api_key_id).update(last_used_at=timezone.now())
    except DatabaseError:
        logger.warning("could not record last_used_at for API key %s", api_key_id, exc_info=True)


def raw_key_from(request):
    return raw_key_of(request.META.get("HTTP_AUTHORIZATION"), request.META.get("HTTP_X_API_KEY"))


def raw_key_of(authorization, x_api_key):
    """The key of an ``Authorization: Bearer`` header, else of ``X-API-Key``; None for other schemes."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None  # Basic / other schemes: not ours
        return value.strip()
    return x_api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw_key = raw_key_from(request)
        if raw_key is None:
            return None
        try:
            result = resolve_api_key(raw_key, client_ip(request)) if raw_key else None
        except throttling.AuthThrottled as exc:  # no lookup and no log line: one summary per window
            raise exceptions.Throttled(wait=exc.wait, detail="Too many failed authentications from this address.")
        if result is None:  # logged with a fingerprint (sha256 prefix) of the key, never the key
            fingerprint, ip = hash_key(raw_key)[:12], client_ip(request)
            # the same structured fields as the WebSocket and gRPC refusals (JSON logs)
            logger.warning("authentication failed: invalid or revoked API key fingerprint=%s path=%s ip=%s",
                           fingerprint, request.path, ip,
                           extra={"transport": "rest", "reason": "invalid_key", "key_fingerprint": fingerprint,
                                  "client_ip": ip})
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return result

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes ApiKeyAuthentication."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An SDK key (evaluate + snapshot of its environment), a management token "
            "(acts as its user) or a relay token (/api/relay/* only). Also accepted as the X-API-Key header.",
        }
