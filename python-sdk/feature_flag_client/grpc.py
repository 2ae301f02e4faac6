"""A small gRPC client for flags.v1.FlagService (install the `grpc` extra).

    from feature_flag_client.grpc import GrpcFlagClient

    client = GrpcFlagClient("localhost:50051", "sdk_production_...")
    client.evaluate("new-checkout", "user-123", {"country": "US"})
    # {"flagId": "new-checkout", "enabled": True, "variant": None, "value": True,
    #  "reason": "TARGETING_MATCH", "rule": None, "environment": "production", "version": 42}
    client.evaluate_bulk("user-123", {"country": "US"})        # every flag, REST's bulk shape
    for event in client.watch(since=42):                       # the WebSocket's events, as dicts
        ...

Answers have the same shape as the REST API's, so code can switch transports freely. An unknown
flag answers `reason: "FLAG_NOT_FOUND"` as over REST; other failures raise the SDK's typed errors.
"""

import grpc

from ._proto import flags_pb2, flags_pb2_grpc
from ._protojson import struct_to_dict, to_struct, value_to_python
from .errors import (
    AuthenticationError,
    BadRequestError,
    FlagsiteConnectionError,
    FlagsiteError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
)
from .tracking import EventTracker

_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: BadRequestError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitedError,
    grpc.StatusCode.UNAVAILABLE: FlagsiteConnectionError,
    grpc.StatusCode.DEADLINE_EXCEEDED: FlagsiteConnectionError,
}


def error_from_rpc(error):
    """The SDK's typed exception for a grpc.RpcError."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else None) or str(code)
    cls = _ERRORS.get(code, ServerError if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) else FlagsiteError)
    field = message.split(":", 1)[0] if cls is BadRequestError and ":" in message else None
    return cls(message, code=code.name.lower(), fields={field: [message]} if field else None)


def evaluation_to_dict(message):
    """A flags.v1.Evaluation as the REST API's evaluation object."""
    return {
        "flagId": message.flag_id,
        "enabled": message.enabled,
        "variant": message.variant if message.HasField("variant") else None,
        "value": value_to_python(message.value),
        "reason": message.reason,
        "rule": message.rule if message.HasField("rule") else None,
        "environment": message.environment,
        "version": message.version,
    }


def event_to_dict(message):
    """A flags.v1.WatchFlagsEvent as the WebSocket's event object."""
    if message.type == "snapshot":
        return {"type": "snapshot", **struct_to_dict(message.snapshot)}
    event = {"type": message.type, "environment": message.environment, "version": message.version}
    if message.action:
        event["action"] = message.action
    if message.HasField("flag"):
        event["flag"] = struct_to_dict(message.flag)
    return event


class GrpcFlagClient:
    """Evaluate flags and follow changes over gRPC with an SDK key (or a management token)."""

    def __init__(self, target, api_key, *, environment=None, credentials=None, timeout=5.0, options=None):
        self.target = target
        self.environment = environment or ""
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        if credentials is not None:
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = flags_pb2_grpc.FlagServiceStub(self.channel)
        self.events = EventTracker(self._send_events)

    def track(self, event, user_id, value=None, properties=None, timestamp=None):
        """Queue an event for experiment metrics, sent in batches by Track (see
        FeatureFlagClient.track: same queue, ids and retry rules)."""
        return self.events.track(event, user_id, value, properties, timestamp)

    def flush_events(self):
        return self.events.flush()

    def _send_events(self, batch):
        request = flags_pb2.TrackRequest(environment=self.environment)
        for item in batch:
            message = request.events.add(event=item["event"], user_id=item["userId"], id=item["id"],
                                         timestamp=item.get("timestamp", ""))
            if item.get("value") is not None:
                message.value = item["value"]
            if item.get("properties"):
                message.properties.CopyFrom(to_struct(item["properties"]))
        self._call(self.stub.Track, request)

    def _call(self, method, request, timeout=None):
        try:
            return method(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    @staticmethod
    def _fill(request, user_id, context):
        if user_id is not None:
            request.user_id = str(user_id)
        if context:
            request.context.CopyFrom(to_struct(context))
        return request

    def evaluate(self, flag_id, user_id=None, context=None, environment=None):
        """{"flagId", "enabled", "variant", "value", "reason", "rule", "environment", "version"}."""
        request = self._fill(flags_pb2.EvaluateRequest(flag_id=flag_id, environment=environment or self.environment),
                             user_id, context)
        try:
            return evaluation_to_dict(self._call(self.stub.Evaluate, request).evaluation)
        except NotFoundError:
            return {"flagId": flag_id, "enabled": False, "variant": None, "value": None,
                    "reason": "FLAG_NOT_FOUND", "rule": None, "environment": environment or self.environment or None,
                    "version": None}

    def is_enabled(self, flag_id, user_id=None, context=None, default=False):
        """True/False, falling back to `default` when the server cannot answer."""
        try:
            return bool(self.evaluate(flag_id, user_id, context)["enabled"])
        except (FlagsiteConnectionError, ServerError):
            return default

    def evaluate_bulk(self, user_id=None, context=None, flag_ids=None, environment=None):
        """{"environment", "version", "flags": {flagId: evaluation}}; all flags when flag_ids is None.
        Unknown flags answer reason FLAG_NOT_FOUND (with an "error" entry)."""
        request = self._fill(flags_pb2.EvaluateBulkRequest(flag_ids=list(flag_ids or ()),
                                                           environment=environment or self.environment),
                             user_id, context)
        response = self._call(self.stub.EvaluateBulk, request)
        flags = {}
        for message in response.evaluations:
            result = evaluation_to_dict(message)
            if message.HasField("error"):
                result["error"] = {"code": message.error.code, "message": message.error.message}
            flags[message.flag_id] = result
        return {"environment": response.environment, "version": response.version, "flags": flags}

    def watch(self, since=None, environment=None):
        """Iterator of change events: {"type": "hello", ...} first, then what was missed since
        `since` (or one {"type": "snapshot", ...}), then every change. Ends when the server ends
        the stream; call `.cancel()` on the returned iterator's `call` to stop early."""
        request = flags_pb2.WatchFlagsRequest(environment=environment or self.environment)
        if since is not None:
            request.since_version = int(since)
        call = self.stub.WatchFlags(request, metadata=self._metadata)
        return _Watch(call)

    def close(self):
        self.events.close()
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Watch:
    def __init__(self, call):
        self.call = call

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return event_to_dict(next(self.call))
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                raise StopIteration from None
            raise error_from_rpc(error) from None

    def cancel(self):
        self.call.cancel()
