"""The evaluation fast lane: `/api/evaluate` and `/api/evaluate/bulk` answered without Django's
request cycle or DRF's view machinery (issue 15).

A warm evaluation needs little: read the body, find the key in the in-process key cache, charge
the rate limiter, evaluate on the in-process snapshot, count, write the prebuilt JSON. Django's
middleware stack and DRF's request/negotiation/permission/throttle objects cost several times that
(bench/rest.py). So `answer()` does exactly the warm path, calling the same functions the DRF views
call (authentication, permissions, parsers, parse_evaluation, throttling.charge, the results'
prebuilt JSON, metrics, request ids); headers are the ones Django's own middleware produce, taken
from that middleware once per process.

Anything else it leaves to Django by returning None before it has done anything (no charge, no
count): a key not in the cache (the lookup, failure counting and 401 live there), a body or
environment that fails validation (the 400s), an Origin header (CORS), a host outside
ALLOWED_HOSTS, a query string, a chunked body, an HTTPS redirect, a snapshot that needs reloading
while the caller may not block. Errors therefore keep exactly one implementation, and
tests/flags/test_fastlane.py proves the lane's answers equal Django's, header for header.

Two doors lead here: the ASGI app in flagsite/asgi.py (ahead of Django, on the event loop, so it
never blocks: `blocking=False`) and `FastLaneMiddleware`, first in MIDDLEWARE, for WSGI servers and
Django's test client (the whole suite goes through the lane).
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import resolve
from rest_framework import exceptions

from analytics import counters as analytics_counters
from flags import snapshot
from flags.apis import EvaluateApi, EvaluateBulkApi, bulk_call_weight, parse_evaluation
from flags.errors import ValidationFailed
from flags.results import _render, bulk_json, evaluation_json
from flagsite.api import authentication, parsers, throttling
from flagsite.api.exceptions import exception_handler
from flagsite.api.permissions import environment_of
from flagsite.ops import metrics
from flagsite.ops.requestid import request_id_from, request_id_var

logger = logging.getLogger(__name__)
ROUTES = {"/api/evaluate": (EvaluateApi, False), "/api/evaluate/bulk": (EvaluateBulkApi, True)}


@dataclass
class Answer:
    status: int
    headers: list  # [(name, value)], str
    body: bytes


def handles(method, path):
    """Whether the lane may answer this request at all (cheap: method and path only)."""
    return method == "POST" and path in ROUTES and settings.FLAGS_FAST_LANE


def answer(request, body, *, blocking):
    """The lane's answer to a POST to one of ROUTES, or None to let Django answer it.

    ``request``: an HttpRequest (Django's own, or LaneRequest from ASGI) for its META, host and
    scheme; ``body``: the request body; ``blocking``: whether this call may wait on the database
    (a cold snapshot, the key's last-used stamp). The rate limiter may touch the shared cache once
    per batch either way."""
    started = time.perf_counter()
    meta = request.META
    view, bulk = ROUTES[request.path]
    if (
        meta.get("QUERY_STRING") or "HTTP_ORIGIN" in meta or "HTTP_TRANSFER_ENCODING" in meta
        or meta.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json"
        or len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    ):
        return None
    secure = _host_and_scheme(request)
    if secure is None:
        return None  # a host Django refuses, or a request SecurityMiddleware redirects to HTTPS
    raw_key = authentication.raw_key_of(meta.get("HTTP_AUTHORIZATION"), meta.get("HTTP_X_API_KEY"))
    found = raw_key and authentication.cached_api_key(raw_key, touch=blocking)
    if not found:
        return None
    user, principal = found
    if principal.kind != "sdk" and not user.has_perms(view.required_perms["POST"]):
        return None
    try:
        flag_ids, user_id, context, environment = parse_evaluation(parsers.parse_json(body), bulk=bulk)
        environment = environment_of(principal, environment)
        evaluated = snapshot.get_snapshot(environment) if blocking else snapshot.fresh_snapshot(environment)
    except (exceptions.APIException, ValidationFailed):
        return None
    if evaluated is None:
        return None

    request_id = request_id_from(meta)
    token = request_id_var.set(request_id)
    try:
        weight = bulk_call_weight(flag_ids, evaluated) if bulk else 1
        wait = throttling.charge(throttling.scope_for(view), throttling.key_ident(principal), weight)
        if wait is not None:
            refusal = exception_handler(exceptions.Throttled(wait=wait), {})
            extra = [(name, value) for name, value in refusal.headers.items() if name != "Content-Type"]
            status, body = refusal.status_code, _render(refusal.data)
        elif bulk:
            results = evaluated.evaluate_all(user_id, context, flag_ids)
            analytics_counters.record_all(results, user_id, context)
            status, body, extra = 200, bulk_json(evaluated.environment, evaluated.version, results), []
        else:
            result = evaluated.evaluate(flag_ids, user_id, context)
            analytics_counters.record(result, user_id, context)
            status, body, extra = 200, evaluation_json(result), []
    finally:
        request_id_var.reset(token)
    headers = [("Content-Type", "application/json"), *extra, *_common_headers(view, secure)]
    if len(body) >= getattr(settings, "FLAGS_GZIP_MIN_BYTES", 1024):
        body, headers = _compressed(request, body, headers)
    headers += [("Content-Length", str(len(body))), ("X-Request-ID", request_id)]
    metrics.observe("POST", _route(request.path), status, time.perf_counter() - started)
    return Answer(status, headers, body)


# ---- what Django's middleware would add -----------------------------------------------------------

_hosts = {}  # (Host, scheme, forwarded headers) -> secure flag, or None when Django would not serve it


def _host_and_scheme(request):
    """Whether the request is secure (for HSTS), or None when Django would refuse the host
    (CommonMiddleware's get_host) or redirect to HTTPS (SecurityMiddleware): the same checks,
    through Django's own HttpRequest methods, remembered per distinct header set."""
    meta = request.META
    key = (meta.get("HTTP_HOST"), getattr(request, "lane_scheme", None) or meta.get("wsgi.url_scheme"),
           meta.get("HTTP_X_FORWARDED_PROTO"), meta.get("HTTP_X_FORWARDED_HOST"), meta.get("SERVER_NAME"),
           meta.get("SERVER_PORT"))
    try:
        return _hosts[key]
    except KeyError:
        pass
    try:
        request.get_host()
        secure = request.is_secure()
        verdict = None if settings.SECURE_SSL_REDIRECT and not secure else secure
    except Exception:  # DisallowedHost, a malformed header: Django answers
        verdict = None
    if len(_hosts) >= 1024:
        _hosts.clear()
    _hosts[key] = verdict
    return verdict


_common = {}


def _common_headers(view, secure):
    """The headers Django's middleware (SecurityMiddleware, XFrameOptionsMiddleware, CORS's Vary)
    and DRF (Allow) put on an evaluation answer without an Origin header, made once per process by
    that middleware itself on a blank response."""
    key = (view, secure)
    headers = _common.get(key)
    if headers is None:
        from corsheaders.middleware import CorsMiddleware
        from django.middleware.clickjacking import XFrameOptionsMiddleware
        from django.middleware.security import SecurityMiddleware

        probe = LaneRequest("POST", "/api/evaluate", {"SERVER_NAME": "lane", "SERVER_PORT": "443" if secure else "80"},
                            "https" if secure else "http")
        response = HttpResponse(content_type="application/json")
        response["Allow"] = ", ".join(view().allowed_methods)
        for middleware in (XFrameOptionsMiddleware, SecurityMiddleware):
            response = middleware(lambda request: response).process_response(probe, response)
        response = CorsMiddleware(lambda request: response).add_response_headers(probe, response)
        headers = _common[key] = [(name, value) for name, value in response.items() if name != "Content-Type"]
    return headers


def _compressed(request, body, headers):
    """A large answer as JsonGZipMiddleware leaves it (gzip when accepted, Vary either way): that
    middleware itself, and CORS's Vary after it, as in MIDDLEWARE's order."""
    from corsheaders.middleware import CorsMiddleware

    from flagsite.ops.compression import JsonGZipMiddleware

    response = HttpResponse(body, content_type="application/json")
    response = JsonGZipMiddleware(lambda request: response).process_response(request, response)
    response = CorsMiddleware(lambda request: response).add_response_headers(request, response)
    changed = {name: value for name, value in response.items() if name not in ("Content-Type", "Content-Length")}
    headers = [(name, changed.pop(name, value)) for name, value in headers] + list(changed.items())
    return response.content, headers


_routes = {}


def _route(path):
    """The metrics label Django's resolver gives the path (its URL pattern)."""
    route = _routes.get(path)
    if route is None:
        route = _routes[path] = resolve(path).route
    return route


# ---- the two doors --------------------------------------------------------------------------------


class LaneRequest(HttpRequest):
    """The HttpRequest an ASGI request gives the lane: META as Django's ASGIRequest builds it, so
    get_host(), is_secure() and the META-reading helpers behave as they do in Django."""

    def __init__(self, method, path, meta, scheme):
        super().__init__()
        self.method = method
        self.path = self.path_info = path
        self.META = meta
        self.lane_scheme = scheme

    def _get_scheme(self):
        return self.lane_scheme


def lane_request(scope):
    meta = {"REQUEST_METHOD": scope["method"], "QUERY_STRING": scope.get("query_string", b"").decode("latin1"),
            "SERVER_NAME": (scope.get("server") or ("unknown",))[0],
            "SERVER_PORT": str((scope.get("server") or (None, 80))[1] or 80)}
    client = scope.get("client")
    if client:
        meta["REMOTE_ADDR"] = client[0]
    for name, value in scope.get("headers", ()):
        name = name.decode("latin1").upper().replace("-", "_")
        if name not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            name = "HTTP_" + name
        value = value.decode("latin1")
        meta[name] = f"{meta[name]},{value}" if name in meta else value
    return LaneRequest(scope["method"], scope["path"], meta, scope.get("scheme", "http"))


def asgi(django_app):
    """ASGI app: lane requests answered on the event loop, everything else (and whatever the lane
    declines) handed to ``django_app`` with the body it already read."""

    watching = False

    async def app(scope, receive, send):
        nonlocal watching
        if scope["type"] != "http" or not handles(scope["method"], scope["path"]):
            return await django_app(scope, receive, send)
        if not watching:  # this process's watcher keeps snapshots fresh, so the lane need not re-check them
            watching = True
            await _start_watcher()
        request = lane_request(scope)
        body, replay = await _read_body(request.META, receive)
        result = answer(request, body, blocking=False) if body is not None else None
        if result is None:
            return await django_app(scope, replay, send)
        await send({"type": "http.response.start", "status": result.status,
                    "headers": [(n.encode("latin1"), v.encode("latin1")) for n, v in result.headers]})
        await send({"type": "http.response.body", "body": result.body})

    return app


def _length(meta):
    """The Content-Length, 0 when absent, and past any limit when unreadable."""
    try:
        return int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return float("inf")


async def _start_watcher():
    from flags.live import watcher

    try:
        await watcher.start()
    except Exception:  # the database is down: requests fall through to Django, which copes
        logger.warning("could not start the change watcher; stale snapshots are re-checked through Django",
                       exc_info=True)


async def _read_body(meta, receive):
    """(body, receive for Django): the whole body when it has a Content-Length within the upload
    limit, else (None, receive) untouched, for Django to read and refuse as it does."""
    if _length(meta) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE or "HTTP_TRANSFER_ENCODING" in meta:
        return None, receive
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: Django sees the disconnect
            pending = [message]
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            pending = []
            break
    body = b"".join(chunks)

    async def replay():
        if pending:
            return pending.pop()
        if chunks:
            chunks.clear()
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return (body if not pending else None), replay


class FastLaneMiddleware:
    """The lane inside Django, first in MIDDLEWARE: WSGI servers and the test client. Under ASGI
    the lane already ran ahead of Django (flagsite/asgi.py), so this passes straight through."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async or not handles(request.method, request.path):
            return self.get_response(request)
        result = None
        meta = request.META
        # read the body only when Django could (its size limit) and nothing after us must (chunked)
        if "HTTP_TRANSFER_ENCODING" not in meta and _length(meta) <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            result = answer(request, request.body, blocking=True)
        if result is None:
            return self.get_response(request)
        response = HttpResponse(result.body, status=result.status)
        for name, value in result.headers:
            response[name] = value
        return response
