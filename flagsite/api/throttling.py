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
Cost: one cache ``incr`` per request (plus an ``add`` at the start of each window); no SQL. When
the cache is down, requests pass unlimited (a flag server must keep answering), and for
``CACHE_RETRY_SECONDS`` after a failure the limiter does not touch the cache at all: a hung Redis
costs one socket timeout per retry interval, not one per request (and one log line, not one each)."""

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from flagsite.api.authentication import ApiKeyPrincipal

logger = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SETTINGS = {"evaluate": "FLAGS_RATE_LIMIT_EVALUATE", "management": "FLAGS_RATE_LIMIT_MANAGEMENT",
            "ofrep": "FLAGS_OFREP_RATE_LIMIT"}
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


class ApiRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        global _cache_down_until
        scope = scope_for(view)
        rate = rate_for(scope)
        if rate is None:
            return True
        limit, period = rate
        now = time.time()
        if now < _cache_down_until:
            return True
        window = int(now // period)
        key = f"flags:rate:{scope}:{self.ident(request)}:{period}:{window}"
        try:
            try:
                count = cache.incr(key)
            except ValueError:  # first request of the window
                count = 1 if cache.add(key, 1, timeout=period + 1) else cache.incr(key)
        except Exception as exc:  # the cache is down: answer unlimited rather than fail
            _cache_down_until = now + CACHE_RETRY_SECONDS
            logger.warning("rate limits not applied for %.0f s, cache unavailable: %s", CACHE_RETRY_SECONDS, exc)
            return True
        if count <= limit:
            return True
        self._wait = max(1, math.ceil((window + 1) * period - now))
        logger.info("rate limited: scope=%s client=%s limit=%s/%ss", scope, self.ident(request), limit, period)
        return False

    def ident(self, request):
        auth = request.auth
        if isinstance(auth, ApiKeyPrincipal):
            return f"key:{auth.id}"
        user = request.user
        if user is not None and getattr(user, "pk", None) is not None:
            return f"user:{user.pk}"
        return f"ip:{self.get_ident(request)}"

    def wait(self):
        return getattr(self, "_wait", None)
