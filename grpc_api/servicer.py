"""flags.v1.FlagService: evaluation from the process's in-memory snapshot, live changes from the
process's ThreadWatcher. The same engine, snapshot, keys and change events as REST and /ws.

A warm call does no SQL: the API key lookup and the compiled snapshot are cached in-process (the
snapshot re-checks its environment's version at most every FLAGS_MAX_STALENESS_MS).

The unary path is measured against a do-nothing servicer on the same server (bench/grpc.py), so
it stays lean: responses are built once per engine result (flags/results.py), the context
converts with a scalar fast path, the database connection is only looked at when this thread
opened one, and metrics are per-thread tallies (grpc_api/metrics.py).
"""

import logging
import queue
import re
import threading
import time

import grpc
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.db.backends.signals import connection_created
from feature_flag_client._protojson import _number, fill_struct, fill_value, struct_to_dict, value_to_python

from analytics import counters as analytics_counters
from flags.errors import ValidationFailed
from flags.results import PerResult
from flags.snapshot import get_snapshot
from flagsite.api.authentication import hash_key, resolve_api_key
from flagsite.api.throttling import AuthThrottled
from grpc_api import metrics
from grpc_api.stubs import flags_pb2, flags_pb2_grpc
from projects import scope

logger = logging.getLogger(__name__)
# Failed authentications go to REST's logger (one place to alert on), with transport="grpc".
auth_logger = logging.getLogger("flagsite.api.authentication")

FLAG_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_CONTEXT_BYTES = 64 * 1024
MAX_CONTEXT_DEPTH = 16
MAX_USER_ID_LENGTH = 1024
STREAM_QUEUE = 10_000
_CLOSE = object()
_RESYNC = object()
_OK = grpc.StatusCode.OK.name


class Abort(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


class AuthFailed(Abort):
    """UNAUTHENTICATED / PERMISSION_DENIED, logged (never with the key) by the method wrapper."""

    def __init__(self, code, message, reason, raw_key=None, principal=None):
        super().__init__(code, message)
        self.reason, self.raw_key, self.principal = reason, raw_key, principal

    def log(self, method, context):
        fields = {"transport": "grpc", "reason": self.reason, "method": method, "peer": _peer(context)}
        if self.principal is not None:  # a valid key, denied: its stored (public) prefix
            fields["key_prefix"] = self.principal.prefix
        elif self.raw_key:  # unknown or revoked: a fingerprint (sha256 prefix), as REST logs it
            fields["fingerprint"] = hash_key(self.raw_key)[:12]
        auth_logger.warning("authentication failed: %s %s", self.reason,
                            " ".join(f"{name}={value}" for name, value in fields.items() if name != "reason"),
                            extra=fields)


def _peer(context):
    try:
        return context.peer()
    except Exception:  # never let logging fail a call
        return ""


def peer_ip(context):
    """The client address of a call: "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678" -> "1.2.3.4" / "::1"."""
    peer = _peer(context)
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer or None  # unix sockets and the like: the peer string itself
    return rest.rpartition(":")[0].strip("[]") or None


def _bad(field, message):
    return Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {message}")


def _bearer(metadata):
    for key, value in metadata:
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


def authorize(context, requested_environment):
    """The environment this call may read, or AuthFailed (UNAUTHENTICATED / PERMISSION_DENIED)."""
    raw = _bearer(context.invocation_metadata())
    if not raw:
        raise AuthFailed(grpc.StatusCode.UNAUTHENTICATED,
                         "authorization metadata 'Bearer <key>' with an SDK key is required",
                         "missing credentials" if raw is None else "malformed credentials")
    try:
        resolved = resolve_api_key(raw, lambda: peer_ip(context))
    except AuthThrottled as exc:  # no lookup, no log line (one summary per window)
        raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
    if resolved is None:
        raise AuthFailed(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked API key",
                         "invalid or revoked API key", raw_key=raw)
    user, principal = resolved
    if principal.kind == "sdk":
        own = scope.split(principal.environment)[1]
        if requested_environment and requested_environment not in (own, principal.environment):
            raise AuthFailed(grpc.StatusCode.PERMISSION_DENIED,
                             f"this SDK key belongs to environment '{own}'",
                             "environment not allowed for this SDK key", principal=principal)
        return principal.environment
    if not user.has_perm("flags.view_flag"):
        raise AuthFailed(grpc.StatusCode.PERMISSION_DENIED, "this token's user may not view flags",
                         "token lacks flags.view_flag", principal=principal)
    return scope.ref(principal.project, requested_environment or getattr(settings, "FLAGS_DEFAULT_ENVIRONMENT",
                                                                           "development"))


def _snapshot(environment):
    try:
        return get_snapshot(environment)
    except ValidationFailed:
        raise _bad("environment", f"unknown environment '{environment}'") from None


def _user_id(request):
    if not request.HasField("user_id"):
        return None
    if len(request.user_id) > MAX_USER_ID_LENGTH:
        raise _bad("user_id", f"longer than {MAX_USER_ID_LENGTH} characters")
    return request.user_id


def _context(request):
    if not request.HasField("context"):
        return {}
    context = request.context
    if context.ByteSize() > MAX_CONTEXT_BYTES:
        raise _bad("context", f"larger than {MAX_CONTEXT_BYTES} bytes")
    # feature_flag_client._protojson.struct_to_dict, with the top level's scalars inline (most
    # contexts are flat) and keys indexed rather than items() (a Python-level view over the map,
    # ~20% slower): still the largest part of a warm call (~4 us of ~8 for 6 fields).
    converted = {}
    fields = context.fields
    try:
        for key in fields:
            item = fields[key]
            kind = item.WhichOneof("kind")
            if kind == "string_value":
                converted[key] = item.string_value
            elif kind == "number_value":
                converted[key] = _number(item.number_value)
            elif kind == "bool_value":
                converted[key] = item.bool_value
            else:
                converted[key] = value_to_python(item, 0, MAX_CONTEXT_DEPTH)
    except ValueError as exc:
        raise _bad("context", str(exc)) from None
    return converted


def _flag_key(field, value):
    if not value:
        raise _bad(field, "a flag key is required")
    if not FLAG_KEY.match(value):
        raise _bad(field, f"'{value[:140]}' is not a valid flag key")
    return value


def release_connection():
    """Close a database connection this call opened (an API key cache miss, a stale snapshot).

    Calls run on a pool of many threads; each would otherwise keep its own connection open
    forever (nothing closes them per request as Django's request signals do). The watcher thread
    keeps the snapshots fresh, so request threads rarely need the database at all.
    """
    _opened.__dict__.pop("pending", None)
    connection = connections["default"]
    if connection.connection is not None and not connection.in_atomic_block:
        connection.close()


_opened = threading.local()  # .pending: this thread connected to the database since its last release


def _note_connection(sender, connection, **kwargs):
    _opened.pending = True


connection_created.connect(_note_connection, dispatch_uid="grpc_api.servicer.note_connection")


def _release_opened():
    """release_connection() for the unary hot path: a thread that opened no connection since its
    last release skips looking its connection up (an asgiref Local, ~1 us a call)."""
    if _opened.__dict__.pop("pending", False):
        release_connection()


def _tracked(index, event):
    """A TrackedEvent as the JSON event REST takes (unset fields absent)."""
    item = {"event": event.event, "userId": event.user_id}
    if event.HasField("value"):
        item["value"] = event.value
    if event.timestamp:
        item["timestamp"] = event.timestamp
    if event.HasField("properties"):
        try:
            item["properties"] = struct_to_dict(event.properties, 0, MAX_CONTEXT_DEPTH)
        except ValueError as exc:
            raise _bad(f"events[{index}].properties", str(exc)) from None
    if event.id:
        item["id"] = event.id
    return item


def fill_evaluation(message, result):
    message.flag_id = result.flag_id
    message.enabled = result.enabled
    if result.variant is not None:
        message.variant = result.variant
    fill_value(message.value, result.value)
    message.reason = result.reason
    if result.rule is not None:
        message.rule = result.rule
    message.environment = result.environment or ""
    if result.version is not None:
        message.version = result.version
    return message


def evaluate_response(result):
    response = flags_pb2.EvaluateResponse()
    fill_evaluation(response.evaluation, result)
    return response


def event_message(event):
    message = flags_pb2.WatchFlagsEvent(type=event["type"], environment=event["environment"],
                                        version=event.get("version") or 0)
    if event.get("action"):
        message.action = event["action"]
    if event.get("flag") is not None:
        fill_struct(message.flag, event["flag"])
    if event["type"] == "snapshot":
        fill_struct(message.snapshot, event["payload"])
    return message


def handled(method):
    """Map Abort / unexpected errors to status codes; a bad call never takes the server down.
    Counts the call (method, status code, time in the service) for /metrics."""
    name = method.__name__

    def wrapper(self, request, context, _clock=time.perf_counter, _record=metrics.record_call):
        started = _clock()
        code = _OK
        try:
            return method(self, request, context)
        except Abort as abort:
            code = abort.code.name
            if abort.__class__ is AuthFailed:
                abort.log(name, context)
            context.abort(abort.code, abort.message)
        except DatabaseError as exc:
            code = grpc.StatusCode.UNAVAILABLE.name
            close_old_connections()
            logger.warning("%s: database unavailable: %s", name, exc)
            context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable, retry")
        except BaseException:
            code = grpc.StatusCode.UNKNOWN.name
            raise
        finally:
            _release_opened()
            _record(name, code, _clock() - started)

    wrapper.__name__ = name
    return wrapper


class FlagService(flags_pb2_grpc.FlagServiceServicer):
    def __init__(self, watcher=None, max_streams=100):
        from flags.live import ThreadWatcher

        self.watcher = watcher or ThreadWatcher()
        self.max_streams = max_streams
        self._streams = {}  # stream queue -> None (the open WatchFlags calls)
        self._streams_lock = threading.Lock()
        self._closing = False
        self._response = PerResult(evaluate_response)  # shared, never mutated (flags/results.py)
        metrics.collector.services.add(self)

    @handled
    def Evaluate(self, request, context):
        environment = authorize(context, request.environment)
        flag_id = _flag_key("flag_id", request.flag_id)
        user_id, ctx = _user_id(request), _context(request)
        snapshot = _snapshot(environment)
        if flag_id not in snapshot:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"flag '{flag_id}' not found in environment '{environment}'")
        result = snapshot.evaluate(flag_id, user_id, ctx)
        analytics_counters.record(result, user_id, ctx)
        return self._response(result)

    @handled
    def EvaluateBulk(self, request, context):
        environment = authorize(context, request.environment)
        flag_ids = list(request.flag_ids)
        if len(flag_ids) > settings.FLAGS_MAX_BULK_FLAGS:
            raise _bad("flag_ids", f"at most {settings.FLAGS_MAX_BULK_FLAGS} flags per call (FLAGS_MAX_BULK_FLAGS)")
        for index, flag_id in enumerate(flag_ids):
            _flag_key(f"flag_ids[{index}]", flag_id)
        user_id, ctx = _user_id(request), _context(request)
        snapshot = _snapshot(environment)
        response = flags_pb2.EvaluateBulkResponse(environment=snapshot.environment, version=snapshot.version)
        results = snapshot.evaluate_all(user_id, ctx, flag_ids or None)
        analytics_counters.record_all(results, user_id, ctx)
        for result in results:
            message = fill_evaluation(response.evaluations.add(), result)
            if result.reason == "FLAG_NOT_FOUND":
                message.error.code = "FLAG_NOT_FOUND"
                message.error.message = f"flag '{result.flag_id}' not found in environment '{environment}'"
        return response

    @handled
    def Track(self, request, context):
        """Events, as POST /api/events: the same validation (experiments/ingest.py) and buffer."""
        from experiments import buffers
        from experiments.ingest import TooManyEvents, parse_events

        environment = authorize(context, request.environment)
        snapshot = _snapshot(environment)
        try:
            rows = parse_events({"events": [_tracked(i, event) for i, event in enumerate(request.events)]}, snapshot.environment)
        except TooManyEvents as exc:
            raise _bad("events", exc.message) from None
        except ValidationFailed as exc:
            path, messages = next(iter(exc.fields.items()))
            raise _bad(path.replace(".userId", ".user_id"), messages[0]) from None
        if rows and not buffers.events.add(rows):
            raise Abort(grpc.StatusCode.UNAVAILABLE, "too many events waiting to be written; retry shortly")
        return flags_pb2.TrackReply(accepted=len(rows))

    def WatchFlags(self, request, context):
        try:
            environment = authorize(context, request.environment)
            if self._closing:
                raise Abort(grpc.StatusCode.UNAVAILABLE, "server shutting down")
            self.watcher.start()
            if self.watcher.feed.current(environment) is None:
                raise _bad("environment", f"unknown environment '{environment}'")
        except Abort as abort:
            metrics.record_call("WatchFlags", abort.code.name)
            if abort.__class__ is AuthFailed:
                abort.log("WatchFlags", context)
            context.abort(abort.code, abort.message)
        except DatabaseError as exc:
            metrics.record_call("WatchFlags", grpc.StatusCode.UNAVAILABLE.name)
            close_old_connections()
            context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable, retry ({exc.__class__.__name__})")
        finally:
            release_connection()
        events = queue.Queue()
        overflowed = threading.Event()

        def on_event(event):
            if events.qsize() >= STREAM_QUEUE:  # a reader this slow gets one snapshot instead
                if not overflowed.is_set():
                    overflowed.set()
                    events.put(_RESYNC)
                return
            events.put(event)

        with self._streams_lock:
            full = len(self._streams) >= self.max_streams
            if not full:
                self._streams[events] = None
        if full:
            metrics.record_call("WatchFlags", grpc.StatusCode.RESOURCE_EXHAUSTED.name)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"this server holds {self.max_streams} WatchFlags streams; retry another instance")
        token = self.watcher.subscribe(environment, on_event)
        context.add_callback(lambda: events.put(_CLOSE))
        try:
            yield from self._stream(request, environment, events, overflowed, context)
        finally:
            self.watcher.unsubscribe(token)
            with self._streams_lock:
                self._streams.pop(events, None)
            # counted when it ends: OK when the server ended it, CANCELLED when the client left
            metrics.record_call("WatchFlags", _OK if context.is_active() else grpc.StatusCode.CANCELLED.name)

    def _stream(self, request, environment, events, overflowed, context):
        feed = self.watcher.feed
        payload = feed.current(environment)
        seen = payload["version"]
        yield event_message({"type": "hello", "environment": environment, "version": seen})
        if request.HasField("since_version"):
            missed = feed.since(environment, request.since_version)
            if missed is None:
                yield event_message({"type": "snapshot", "environment": environment,
                                     "version": payload["version"], "payload": payload})
            else:
                for event in missed:
                    seen = max(seen, event["version"])
                    yield event_message(event)
        while context.is_active():
            item = events.get()
            if item is _CLOSE:
                return
            if item is _RESYNC:
                while not events.empty():
                    if events.get_nowait() is _CLOSE:
                        return
                overflowed.clear()
                payload = feed.current(environment)
                seen = payload["version"]
                yield event_message({"type": "snapshot", "environment": environment,
                                     "version": seen, "payload": payload})
                continue
            if item["version"] <= seen:
                continue  # already covered by the hello / resume / snapshot answer
            yield event_message(item)

    def close_streams(self):
        """End every open WatchFlags stream (graceful shutdown: clients reconnect elsewhere)."""
        self._closing = True
        with self._streams_lock:
            for events in list(self._streams):
                events.put(_CLOSE)

    def stream_count(self):
        return len(self._streams)
