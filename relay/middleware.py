"""Relay mode (settings.FLAGS_RELAY): a relay serves evaluation, SDK, OFREP, health, metrics and the
relay protocol (for relays of its own); everything that needs the control plane's database (flag
management, projects, audit, analytics pages, the admin, the dashboard) answers 404 with an error
naming the upstream, instead of failing on the relay's empty in-memory database."""

import json

from django.conf import settings
from django.http import HttpResponse

from flagsite.ops.middleware import SyncAndAsyncMiddleware

RELAY_PATHS = ("/api/evaluate", "/api/sdk/", "/api/events", "/api/health", "/api/relay/", "/ofrep/", "/metrics",
               "/static/", "/favicon.ico")


def served_on_relay(path):
    return path.startswith(RELAY_PATHS)


def refusal(path):
    body = {"error": {"code": "not_on_relay", "fields": {},
                      "message": f"This is an edge relay of {settings.FLAGS_RELAY}: it serves evaluations, SDK "
                                 f"snapshots, OFREP, /ws, health and metrics. {path} lives on the upstream."}}
    return HttpResponse(json.dumps(body), status=404, content_type="application/json")


class RelayModeMiddleware(SyncAndAsyncMiddleware):
    def __call__(self, request):
        if getattr(settings, "FLAGS_RELAY", "") and not served_on_relay(request.path):
            if self.is_async:
                return self._refuse(request)
            return refusal(request.path)
        return self.get_response(request)

    async def _refuse(self, request):
        return refusal(request.path)
