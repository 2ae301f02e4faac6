"""Rate limits for the REST API: a fixed-window request count per API key (else user, else client
address) in the shared cache (Redis with REDIS_URL, so a limit holds across processes; locmem,
in-process, otherwise). Two scopes, each set by an environment variable ("N/s", "N/m", "N/h",
"N/d" or "off"):

- ``evaluate``: views SDK keys may call (evaluate, bulk, SDK snapshot, SDK reports),
  ``FLAGS_RATE_LIMIT_EVALUATE``;
- ``management``: every other /api/ view, ``FLAGS_RATE_LIMIT_MANAGEMENT``;
- ``ofrep``: the OFREP views, ``FLAGS_OFREP_RATE_LIMIT``.

A view opts out with ``throttle_classes = ()`` (health) or picks a scope with ``rate_limit_scope``.
Over the limit: 429 ``{"error": {"code": "throttled", ...}}`` with ``Retry-After`` (seconds, >= 1).
Cost: no SQL, and about one cache ``incr`` per ``batch = max(1, limit // 100)`` calls: each process
takes units from the shared counter a batch at a time (one ``incr(batch)``, plus an ``add`` at the
start of each window) and spends them locally (``Allowance``); a call heavier than what is left takes
a batch big enough for it. A batch is granted only up to the limit, and once the shared total passes
it the process refuses that client until the window ends without asking the cache again (and logs
once). So across P processes a client gets at most ``limit`` calls per window and, in single calls,
at least ``limit - P * (batch - 1)`` (units a process took but did not spend lapse with the window):
within the tolerance ``limit + P * (batch - 1)``, on the strict side. Limits under 200 a window have
batch 1, so are exact as before.

When the cache is down, requests pass unlimited (a flag server must keep answering), and for
``CACHE_RETRY_SECONDS`` after a failure the limiter does not touch the cache at all: a hung Redis
costs one socket timeout per retry interval, not one per request (and one log line, not one each).

A view may weigh its calls with ``rate_weight(request)`` (bulk evaluation: 1 + flags / BULK_UNIT),
spent from the same allowance.

Failed authentications (an unknown or revoked API key, on REST, OFREP, /ws and gRPC) are counted
per client address: ``FLAGS_AUTH_FAILURE_LIMIT`` (default ``100/m``) failures in a window, and that
address's keys that are not already known good answer 429 (``RESOURCE_EXHAUSTED`` on gRPC, close
4429 on /ws) until the window ends, with no SQL and no log line each (one summary line per window).
A blocked address is remembered in-process, so its refusals cost no cache round trip either."""

import logging
import math
import threading
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from flagsite.api import authentication  # ApiKeyPrincipal (which imports this module too)

logger = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SETTINGS = {"evaluate": "FLAGS_RATE_LIMIT_EVALUATE", "management": "FLAGS_RATE_LIMIT_MANAGEMENT",
            "ofrep": "FLAGS_OFREP_RATE_LIMIT", "auth_failures": "FLAGS_AUTH_FAILURE_LIMIT"}
BULK_UNIT = 100  # flags of a bulk evaluation that weigh as much as one request
_parsed = {}
CACHE_RETRY_SECONDS = 5.0
_cache_down_until = 0.0


def parse_rate(rate):
    """"100/s", "6000/min", "100/h" -> (requests, seconds); None, "", "0", "off" -> None."""
    if rate is None or str(rate).strip().lower() in ("", "0", "off", "none", "false"):
        return None
    count, _, period = str(rate).strip().partition("/")
    seconds = PERIODS.get((period.strip() or "s")[0].lower())
    if seconds is None or not count.strip().isdigit():
        raise ValueError(f"rate limit {rate!r}: expected N/s, N/m, N/h, N/d or off")
    return int(count), seconds


def rate_for(scope):
    raw = getattr(settings, SETTINGS[scope], None)
    hit = _parsed.get(raw)
    if hit is None:
        hit = _parsed[raw] = (parse_rate(raw),)
    return hit[0]


def scope_for(view):
    scope = getattr(view, "rate_limit_scope", None)
    if scope:
        return scope
    return "evaluate" if getattr(view, "sdk_allowed", False) else "management"


def count(key, period, amount=1):
    """Add ``amount`` to a counter in the shared cache that lives for one window of ``period``
    seconds: the new total, or None while the cache is unavailable (the caller then lets the request
    through: a flag server must keep answering)."""
    now = time.time()
    if now < _cache_down_until:
        return None
    try:
        try:
            return cache.incr(key, amount)
        except ValueError:  # first of the window
            return amount if cache.add(key, amount, timeout=period + 1) else cache.incr(key, amount)
    except Exception as exc:
        _cache_failed(now, exc)
        return None


def peek(key):
    """A counter's value without changing it (0 when absent), or None while the cache is unavailable."""
    now = time.time()
    if now < _cache_down_until:
        return None
    try:
        return cache.get(key, 0)
    except Exception as exc:
        _cache_failed(now, exc)
        return None


def _cache_failed(now, exc):
    global _cache_down_until
    _cache_down_until = now + CACHE_RETRY_SECONDS
    logger.warning("rate limits not applied for %.0f s, cache unavailable: %s", CACHE_RETRY_SECONDS, exc)


class Allowance:
    """One process's allowances: units taken from the shared counters in batches and spent here.
    Thread-safe; the lock is never held across a cache call. Only the current and the previous
    window of each period are kept."""

    MAX_CLIENTS = 100_000  # per window; past it the window's allowances are forgotten (costs a batch each)

    def __init__(self):
        self._lock = threading.Lock()
        self._windows = {}  # (period, window) -> {(scope, ident, limit): [units left, budget spent]}

    def charge(self, scope, ident, weight=1):
        """See ``charge`` (module level): the same, against this allowance."""
        rate = rate_for(scope)
        if rate is None:
            return None
        limit, period = rate
        weight = min(limit, weight)  # a call heavier than the whole budget passes once, as the window's only call
        now = time.time()
        window = int(now // period)
        with self._lock:
            state = self._state(period, window, (scope, ident, limit))
            if state[0] >= weight:
                state[0] -= weight
                return None
            if state[1]:
                return _retry_after(window, period, now)
            have, state[0] = state[0], 0  # this call's, while it asks for more
        take = max(max(1, limit // 100), weight - have)
        total = count(f"flags:rate:{scope}:{ident}:{period}:{window}", period, take)
        if total is None:  # cache unavailable: let it through, keep what we had
            with self._lock:
                state[0] += have
            return None
        granted = take if total <= limit else max(0, limit - (total - take))  # only units within the limit
        with self._lock:
            if total > limit:
                state[1] = True  # no more batches this window
            if have + granted >= weight:
                state[0] += have + granted - weight
                return None
            state[0] += have  # a refused call keeps nothing of a partial batch: batch 1 stays exact
        logger.info("rate limited: scope=%s client=%s limit=%s/%ss", scope, ident, limit, period)
        return _retry_after(window, period, now)

    def _state(self, period, window, client):
        states = self._windows.get((period, window))
        if states is None:  # a new window: drop all but the previous one (a thread may still be in it)
            self._windows = {key: value for key, value in self._windows.items()
                             if key[0] != period or key[1] == window - 1}
            states = self._windows[(period, window)] = {}
        state = states.get(client)
        if state is None:
            if len(states) >= self.MAX_CLIENTS:
                states.clear()
            state = states[client] = [0, False]
        return state

    def reset(self):
        with self._lock:
            self._windows = {}


def _retry_after(window, period, now):
    return max(1, math.ceil((window + 1) * period - now))


allowance = Allowance()  # this process's


def charge(scope, ident, weight=1):
    """Charge ``weight`` calls to ``ident`` (``key:<id>``, ``user:<pk>`` or ``ip:<address>``) in
    ``scope``: None when the call may go ahead, else the seconds until it may (Retry-After).
    The one limiter every transport calls (DRF views below, the fast evaluation path)."""
    return allowance.charge(scope, ident, weight)


class ApiRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        scope = scope_for(view)
        if rate_for(scope) is None:
            return True
        weigh = getattr(view, "rate_weight", None)
        self._wait = charge(scope, self.ident(request), weigh(request) if weigh is not None else 1)
        return self._wait is None

    def ident(self, request):
        auth = request.auth
        if isinstance(auth, authentication.ApiKeyPrincipal):
            return key_ident(auth)
        user = request.user
        if user is not None and getattr(user, "pk", None) is not None:
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"

    def wait(self):
        return getattr(self, "_wait", None)


def key_ident(principal):
    """Whom an API key's calls are charged to: the key, whichever user it acts for."""
    return f"key:{principal.id}"


def bulk_weight(flags):
    """The rate-limit weight of a call that evaluates ``flags`` flags."""
    return 1 + flags // BULK_UNIT


# ---- failed authentications per client address --------------------------------------------------


class AuthThrottled(Exception):
    """Too many failed authentications from this address: retry in ``wait`` seconds."""

    def __init__(self, wait):
        super().__init__(f"too many failed authentications from this address; retry in {wait} s")
        self.wait = wait


_blocked = {}  # client address -> time.time() its block ends (this process's memo)
_MAX_BLOCKED = 10_000


def _failure_key(ip, period, window):
    return f"flags:authfail:{ip}:{period}:{window}"


def check_auth_failures(ip):
    """Raise AuthThrottled while ``ip`` is over FLAGS_AUTH_FAILURE_LIMIT in this window."""
    rate = rate_for("auth_failures")
    if rate is None or not ip:
        return
    limit, period = rate
    now = time.time()
    until = _blocked.get(ip)
    if until is None:
        window = int(now // period)
        failures = peek(_failure_key(ip, period, window))
        if failures is None or failures < limit:
            return
        until = (window + 1) * period
        if len(_blocked) >= _MAX_BLOCKED:  # a memo only: forgetting costs one cache read per address
            _blocked.clear()
        _blocked[ip] = until
    if now < until:
        raise AuthThrottled(max(1, math.ceil(until - now)))
    _blocked.pop(ip, None)


def record_auth_failure(ip):
    """Count one failed authentication from ``ip``; the one that reaches the limit logs the summary."""
    rate = rate_for("auth_failures")
    if rate is None or not ip:
        return
    limit, period = rate
    window = int(time.time() // period)
    if count(_failure_key(ip, period, window), period) == limit:
        logger.warning("%s failed authentications from %s within %s s: its unknown API keys answer 429 until the "
                       "window ends (FLAGS_AUTH_FAILURE_LIMIT)", limit, ip, period,
                       extra={"reason": "auth_failure_limit", "client_ip": ip})
