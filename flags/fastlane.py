"""The evaluation fast lane: `/api/evaluate`, `/api/evaluate/bulk`, `/api/sdk/snapshot` and OFREP's
`/ofrep/v1/evaluate/flags[/{key}]` answered without Django's request cycle or DRF's view machinery
(issue 15).

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
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, QueryDict
from django.middleware.gzip import re_accepts_gzip
from django.urls import resolve
from django.utils.datastructures import MultiValueDict
from rest_framework import exceptions

from analytics import counters as analytics_counters
from flags import ofrep, snapshot
from flags.apis import (
    EvaluateApi,
    EvaluateBulkApi,
    SdkSnapshotApi,
    bulk_call_weight,
    parse_evaluation,
    sdk_snapshot_answer,
)
from flags.errors import ValidationFailed
from flags.results import _render, bulk_json, evaluation_json
from flagsite.api import authentication, parsers, throttling
from flagsite.api.throttling import bulk_weight
from flagsite.api.permissions import environment_of
from flagsite.ops import metrics
from flagsite.ops.middleware import SyncAndAsyncMiddleware
from flagsite.ops.requestid import request_id_from, request_id_var

logger = logging.getLogger(__name__)


# ---- the routes: what each one reads, and what it answers -----------------------------------------
# read(data, key) -> (environment asked for, args), raising an API error when Django must answer;
# prepare(snapshot, args, meta) -> None to leave it to Django, else (rate weight, produce), where
# produce() -> (status, body bytes or data, extra headers) runs once the limiter let the call in.


def _read_evaluation(bulk):
    def read(data, key):
        flag_ids, user_id, context, environment = parse_evaluation(data, bulk=bulk)
        return environment, (flag_ids, user_id, context)

    return read


def _prepare_evaluate(evaluated, args, meta):
    flag_id, user_id, context = args

    def produce():
        result = evaluated.evaluate(flag_id, user_id, context)
        analytics_counters.record(result, user_id, context)
        return 200, evaluation_json(result), {}

    return 1, produce


def _prepare_bulk(evaluated, args, meta):
    flag_ids, user_id, context = args

    def produce():
        results = evaluated.evaluate_all(user_id, context, flag_ids)
        analytics_counters.record_all(results, user_id, context)
        return 200, bulk_json(evaluated.environment, evaluated.version, results), {}

    return bulk_call_weight(flag_ids, evaluated), produce


def _read_ofrep(data, key):
    return None, (key, *ofrep.parse_request(data))


def _prepare_ofrep_flag(evaluated, args, meta):
    key, user_id, attributes = args
    if ofrep.flag_problem(evaluated, key, user_id) is not None:
        return None  # 404 / 400 in OFREP's shape: Django's view
    return 1, lambda: (200, ofrep.evaluate_flag(evaluated, key, user_id, attributes), {})


def _prepare_ofrep_bulk(evaluated, args, meta):
    _, user_id, attributes = args
    return bulk_weight(len(evaluated.table)), lambda: ofrep.evaluate_all(
        evaluated, user_id, attributes, meta.get("HTTP_IF_NONE_MATCH", ""))


def _prepare_sdk_snapshot(evaluated, args, meta):
    payload = snapshot.fresh_payload(evaluated.environment)
    if payload is None or payload["version"] != evaluated.version:
        return None
    return 1, lambda: sdk_snapshot_answer(evaluated, lambda: payload, meta.get("HTTP_IF_NONE_MATCH", ""))


@dataclass(frozen=True)
class Route:
    view: type  # the DRF view Django runs here: its permissions, rate-limit scope, Allow header, error shapes
    method: str
    read: object
    prepare: object


ROUTES = {
    "/api/evaluate": Route(EvaluateApi, "POST", _read_evaluation(bulk=False), _prepare_evaluate),
    "/api/evaluate/bulk": Route(EvaluateBulkApi, "POST", _read_evaluation(bulk=True), _prepare_bulk),
    "/api/sdk/snapshot": Route(SdkSnapshotApi, "GET", lambda data, key: (None, None), _prepare_sdk_snapshot),
    "/ofrep/v1/evaluate/flags": Route(ofrep.OfrepEvaluateBulkApi, "POST", _read_ofrep, _prepare_ofrep_bulk),
}
OFREP_FLAG = "/ofrep/v1/evaluate/flags/"
OFREP_FLAG_ROUTE = Route(ofrep.OfrepEvaluateFlagApi, "POST", _read_ofrep, _prepare_ofrep_flag)


def _route(method, path):
    """(route, OFREP flag key or None) for a request the lane may take, else (None, None)."""
    route, key = ROUTES.get(path), None
    if route is None and path.startswith(OFREP_FLAG) and len(path) > len(OFREP_FLAG):
        route, key = OFREP_FLAG_ROUTE, path[len(OFREP_FLAG):]
    if route is None or route.method != method:
        return None, None
    return route, key


def handles(method, path):
    """Whether the lane may answer this request at all (cheap: method and path only)."""
    return settings.FLAGS_FAST_LANE and _route(method, path)[0] is not None


@dataclass
class Answer:
    status: int
    headers: list  # [(name, value)], str
    body: bytes


def answer(request, body, *, blocking):
    """The lane's answer to a request for one of its routes, or None to let Django answer it.

    ``request``: an HttpRequest (Django's own, or LaneRequest from ASGI) for its META, host and
    scheme; ``body``: the request body; ``blocking``: whether this call may wait on the database
    (a cold snapshot, the key's last-used stamp). The rate limiter may touch the shared cache once
    per batch either way."""
    started = time.perf_counter()
    meta = request.META
    route, flag_key = _route(request.method, request.path)
    if route is None or meta.get("QUERY_STRING") or "HTTP_ORIGIN" in meta or "HTTP_TRANSFER_ENCODING" in meta:
        return None
    if route.method == "POST" and (
        meta.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json"
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
    view = route.view
    if principal.kind != "sdk" and not user.has_perms(view.required_perms[route.method]):
        return None
    try:
        data = parsers.parse_json(body) if route.method == "POST" else None
        environment, args = route.read(data, flag_key)
        environment = environment_of(principal, environment)
        evaluated = snapshot.get_snapshot(environment) if blocking else snapshot.fresh_snapshot(environment)
        prepared = evaluated and route.prepare(evaluated, args, meta)
    except (exceptions.APIException, ValidationFailed):
        return None
    if not prepared:
        return None

    weight, produce = prepared
    request_id = request_id_from(meta)
    token = request_id_var.set(request_id)
    try:
        wait = throttling.charge(throttling.scope_for(view), throttling.key_ident(principal), weight)
        if wait is None:
            status, content, extra = produce()
        else:  # the view's own error handler shapes the 429 (REST's or OFREP's)
            refusal = view().get_exception_handler()(exceptions.Throttled(wait=wait), {"kwargs": {"key": flag_key}})
            status, content, extra = refusal.status_code, refusal.data, refusal.headers
    finally:
        request_id_var.reset(token)
    body = content if isinstance(content, bytes) else b"" if content is None else _render(content)
    headers = [("Content-Type", "application/json")] if body else []  # DRF drops it from an empty answer
    inner, small, large = _common_headers(view, secure)
    headers += [*((name, value) for name, value in extra.items() if name != "Content-Type"), *inner]
    if len(body) < settings.FLAGS_GZIP_MIN_BYTES:
        headers += small
    elif re_accepts_gzip.search(meta.get("HTTP_ACCEPT_ENCODING", "")):
        body, headers = _compressed(request, body, headers)
    else:
        headers = _merged(headers, large)
    headers += [("Content-Length", str(len(body))), ("X-Request-ID", request_id)]
    metrics.observe(route.method, _route_label(request.path, flag_key), status, time.perf_counter() - started)
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
    """The headers Django's middleware and DRF put on a lane answer to a request without an Origin
    header, made once per process by that middleware itself on probe responses:
    (inside gzip's middleware: Allow, XFrameOptionsMiddleware's, SecurityMiddleware's;
     outside, on a small answer: CORS's Vary;
     outside, on a large answer to a client that does not take gzip: gzip's Vary, then CORS's)."""
    key = (view, secure)
    headers = _common.get(key)
    if headers is None:
        from corsheaders.middleware import CorsMiddleware
        from django.middleware.clickjacking import XFrameOptionsMiddleware
        from django.middleware.security import SecurityMiddleware

        from flagsite.ops.compression import JsonGZipMiddleware

        probe = LaneRequest("POST", "/api/evaluate", {"SERVER_NAME": "lane", "SERVER_PORT": "443" if secure else "80"},
                            "https" if secure else "http")
        response = HttpResponse(content_type="application/json")
        instance = view()
        instance.setup(probe)  # as as_view() does: a view with get() answers HEAD too
        response["Allow"] = ", ".join(instance.allowed_methods)
        for middleware in (XFrameOptionsMiddleware, SecurityMiddleware):
            response = middleware(lambda request: response).process_response(probe, response)
        inner = [(name, value) for name, value in response.items() if name != "Content-Type"]

        gzip = JsonGZipMiddleware(lambda request: None).process_response
        cors = CorsMiddleware(lambda request: None).add_response_headers

        def added(body, *steps):
            blank = HttpResponse(body, content_type="application/json")
            before = set(blank.items())
            for step in steps:
                blank = step(probe, blank)
            return [item for item in blank.items() if item not in before and item[0] != "Content-Length"]

        small = added(b"{}", cors)
        large = added(b" " * settings.FLAGS_GZIP_MIN_BYTES, gzip, cors)
        headers = _common[key] = inner, small, large
    return headers


@receiver(setting_changed)
def _settings_changed(**kwargs):
    """Tests change settings: what was derived from them is made again."""
    _common.clear()
    _hosts.clear()


def _merged(headers, changes):
    changes = dict(changes)
    return [(name, changes.pop(name, value)) for name, value in headers] + list(changes.items())


def _compressed(request, body, headers):
    """A large answer to a client that takes gzip, as JsonGZipMiddleware leaves it (compressed,
    Vary, a weakened ETag): that middleware itself, and CORS's Vary after it, as in MIDDLEWARE."""
    from corsheaders.middleware import CorsMiddleware

    from flagsite.ops.compression import JsonGZipMiddleware

    response = HttpResponse(body)
    for name, value in headers:
        response[name] = value
    response = JsonGZipMiddleware(lambda request: response).process_response(request, response)
    response = CorsMiddleware(lambda request: response).add_response_headers(request, response)
    return response.content, [(name, value) for name, value in response.items() if name != "Content-Length"]


_labels = {}


def _route_label(path, flag_key):
    """The metrics label Django's resolver gives the path (its URL pattern), one per route."""
    probe = path if flag_key is None else OFREP_FLAG + "key"
    label = _labels.get(probe)
    if label is None:
        label = _labels[probe] = resolve(probe).route
    return label


# ---- the two doors --------------------------------------------------------------------------------


_NO_PARAMETERS = QueryDict()  # immutable, so one can serve every request


class LaneRequest(HttpRequest):
    """The HttpRequest an ASGI request gives the lane: META as Django's ASGIRequest builds it, so
    get_host(), is_secure() and the META-reading helpers behave as they do in Django."""

    def __init__(self, method, path, meta, scheme):
        # Not HttpRequest.__init__ (WSGIRequest skips it too): its two QueryDicts cost 8 us of a
        # warm evaluation's ~60 in process, and the lane takes no query string and reads JSON bodies only
        self.GET = self.POST = _NO_PARAMETERS
        self.COOKIES, self.FILES, self.META = {}, MultiValueDict(), meta
        self.method, self.path, self.path_info = method, path, path
        self.resolver_match = self.content_type = self.content_params = None
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
    limit, else (None, receive) untouched, for Django to read and refuse as it does.

    It stops at the declared length: granian sends a body as one message with more_body=True and
    then an empty last one, which costs another wake-up of the event loop (~85 us of a ~500 us
    request at concurrency 1, bench/rest.py). Django, if the lane declines, is given the body as
    one final message and never sees that empty one. No Content-Length (a GET): nothing to read."""
    length = _length(meta)
    if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE or "HTTP_TRANSFER_ENCODING" in meta:
        return None, receive
    if not length:
        return b"", receive
    chunks, size, pending, trailing = [], 0, [], False
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left: Django sees the disconnect
            pending.append(message)
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False):
            break
        if size == length:  # all there is: the server's empty last message is left unread
            trailing = True
            break
    body = b"".join(chunks)

    async def replay():
        nonlocal trailing
        if pending:
            return pending.pop()
        if chunks:
            chunks.clear()
            return {"type": "http.request", "body": body, "more_body": False}
        message = await receive()
        if trailing and message["type"] == "http.request" and not message.get("body"):
            message = await receive()  # the empty last message of a body Django already has
        trailing = False
        return message

    return (body if not pending else None), replay


class FastLaneMiddleware(SyncAndAsyncMiddleware):
    """The lane inside Django, first in MIDDLEWARE: WSGI servers and the test client. Under ASGI
    the lane already ran ahead of Django (flagsite/asgi.py), so this passes straight through."""

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
        del response["Content-Type"]  # only the lane's headers (an empty answer has none)
        for name, value in result.headers:
            response[name] = value
        return response
