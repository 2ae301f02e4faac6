import logging
import uuid

from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache():
    token = uuid.uuid4().hex
    cache.set("flagsite:health", token, 10)
    if cache.get("flagsite:health") != token:
        raise RuntimeError("cache did not return the value just written")


CHECKS = {"database": _check_database, "cache": _check_cache}
logger = logging.getLogger(__name__)
# {check: "ExceptionType: text"} of the latest failure (cleared when the check passes): the details
# (host, port, driver text) go to the logs and to /metrics, never to this anonymous endpoint.
last_errors = {}


class HealthApi(APIView):
    """Liveness and dependencies, ``checks`` naming each one's state:

    - 200 ``ok``: the database and the cache answer;
    - 200 ``degraded``: only the cache (Redis) fails. The node still answers evaluations from its
      snapshot and takes writes (PostgreSQL is the source of truth); only cross-node notices wait
      for the version poll. A load balancer must keep it: every node shares the one Redis, so
      pulling degraded nodes would take the whole fleet out over a cache outage;
    - 503 ``unavailable``: the database fails (writes answer 503; evaluations still answer from
      the snapshot, but a node that cannot take writes is not healthy).

    A failed check says only "unavailable": the error text names hosts and ports (logs, /metrics)."""

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()  # load balancer probes are never rate limited

    @extend_schema(
        responses=inline_serializer(
            "Health", {"status": serializers.CharField(), "checks": serializers.DictField()}
        )
    )
    def get(self, request):
        from django.conf import settings

        if getattr(settings, "FLAGS_RELAY", ""):
            return relay_health()
        checks = {}
        for name, check in CHECKS.items():
            try:
                check()
                checks[name] = "ok"
                last_errors.pop(name, None)
            except Exception as exc:  # any failure of a dependency is a 503, never a 500
                checks[name] = "unavailable"
                last_errors[name] = f"{type(exc).__name__}: {exc}"[:500]
                logger.warning("health check %s failed: %s", name, last_errors[name])
        if checks["database"] == "ok":
            return Response({"status": "ok" if checks["cache"] == "ok" else "degraded", "checks": checks})
        failed = ", ".join(name for name, value in checks.items() if value != "ok")
        error = {"code": "unavailable", "message": f"Unavailable: {failed}.", "fields": {}}
        return Response({"status": "unavailable", "checks": checks, "error": error}, status=503)



def relay_health():
    """A relay (relay/): 200 ``ok`` while it follows its upstream; 200 ``stale`` while it serves its
    last snapshot with the upstream away (``relay.ageSeconds`` since it last heard from it: keep
    the node in rotation, it answers as the upstream last did); 503 before it holds anything."""
    from relay.outbox import outbox
    from relay.state import state

    info = {"upstream": settings_upstream(), "connected": state.connected, "stale": state.stale(),
            "ageSeconds": round(state.age(), 3), "environments": state.versions(), "keys": len(state.keys),
            "fromSnapshotFile": state.loaded_from_file,
            "outbox": {"pending": outbox.pending(), "dropped": outbox.dropped, "droppedItems": outbox.dropped_items}}
    if not state.ready():
        error = {"code": "unavailable", "message": "Unavailable: no snapshot from the upstream yet.", "fields": {}}
        return Response({"status": "unavailable", "checks": {"upstream": "unavailable"}, "relay": info,
                         "error": error}, status=503)
    status = "stale" if info["stale"] else "ok"
    return Response({"status": status, "checks": {"upstream": "ok" if state.connected else "unavailable"},
                     "relay": info})


def settings_upstream():
    from django.conf import settings

    return settings.FLAGS_RELAY
