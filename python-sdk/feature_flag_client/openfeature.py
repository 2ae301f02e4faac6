"""An OpenFeature provider backed by local evaluation (``pip install feature-flag-client[openfeature]``).

    from openfeature import api
    from feature_flag_client.openfeature import FlagsiteProvider

    api.set_provider_and_wait(FlagsiteProvider(base_url="http://localhost:3001/api", api_key="sdk_..."))
    client = api.get_client()
    client.get_boolean_value("new-checkout", False, EvaluationContext("user-123", {"country": "US"}))
    client.get_string_details("button-color", "blue", EvaluationContext("user-123"))

Flags evaluate in-process on the live snapshot of ``LocalFeatureFlagClient`` (the same engine as the
server, no request per evaluation). The evaluation context's targeting key is the user id, its
attributes the context. Results follow OFREP (feature_flag_client/reasons.py): boolean flags resolve
to their boolean; multivariate flags to the variant's value (string, number, object or list) with the
variant's key; a multivariate flag that is off resolves to the caller's default (reason DISABLED or
DEFAULT, variant "off"). Errors resolve to the default value with reason ERROR and an error code:
FLAG_NOT_FOUND, TYPE_MISMATCH (the flag's value is not of the requested type),
TARGETING_KEY_MISSING (the flag targets by user id and the context has no targeting key),
PROVIDER_NOT_READY (no snapshot loaded yet).

Tracking: ``client.track("purchase", EvaluationContext("user-123"), TrackingEventDetails(19.99, {...}))``
queues the event for POST /api/events (the targeting key is the user; see FeatureFlagClient.track).

Events: PROVIDER_READY once a snapshot is loaded, PROVIDER_CONFIGURATION_CHANGED (with the changed
flag keys) on every later snapshot that changes flags.
"""

import datetime
import logging
import math
import threading

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import (
    FlagNotFoundError,
    ProviderNotReadyError,
    TargetingKeyMissingError,
    TypeMismatchError,
)
from openfeature.flag_evaluation import FlagResolutionDetails
from openfeature.provider import AbstractProvider, Metadata

from .local import LocalFeatureFlagClient
from .reasons import is_multivariate, openfeature_reason, openfeature_variant
from .targeting import needs_targeting_key

__all__ = ["FlagsiteProvider"]
log = logging.getLogger("feature_flag_client")


class FlagsiteProvider(AbstractProvider):
    """OpenFeature provider over a Flagsite local evaluator.

    Give ``client`` (a started or unstarted ``LocalFeatureFlagClient``, or a ``LocalEvaluator``
    loaded with a snapshot payload, e.g. in tests), or ``base_url`` / ``api_key`` (and any other
    ``LocalFeatureFlagClient`` argument) for the provider to create, start and close its own.
    ``ready_timeout``: how long ``initialize`` waits for the first snapshot.
    """

    def __init__(self, client=None, *, base_url="http://localhost:3001/api", api_key=None,
                 ready_timeout=10.0, **client_kwargs):
        super().__init__()
        self._owned = client is None
        self.client = client if client is not None else LocalFeatureFlagClient(base_url, api_key, **client_kwargs)
        self.ready_timeout = ready_timeout
        self._ready = threading.Event()
        self._initialized_once = False
        self._watch_loads()

    # ---- lifecycle -------------------------------------------------------------------------------

    def get_metadata(self):
        return Metadata(name="Flagsite")

    def initialize(self, evaluation_context=None):
        client = self.client
        if isinstance(client, LocalFeatureFlagClient) and not client.ready.is_set():
            if self._owned:  # follow the server: WebSocket + poll (they keep retrying if this load fails)
                client.start(wait=False)
                try:
                    client.refresh()
                except Exception:  # noqa: BLE001 - served as PROVIDER_NOT_READY until a load succeeds
                    pass
            client.ready.wait(self.ready_timeout)
        self._initialized_once = True
        if not self._loaded():
            raise ProviderNotReadyError("Flagsite: no flag snapshot loaded yet")
        self._ready.set()

    def shutdown(self):
        if self._owned and isinstance(self.client, LocalFeatureFlagClient):
            self.client.close()

    # ---- tracking (OpenFeature's tracking API: client.track(name, context, details)) ------------

    def track(self, tracking_event_name, evaluation_context=None, tracking_event_details=None):
        """Send an event for experiment metrics through the client's event queue (track() of
        feature_flag_client): the context's targeting key is the user, the details' value the
        value and their attributes the properties. Without a targeting key nothing is sent (an
        event must belong to a user); with a client that cannot send (a bare LocalEvaluator), neither."""
        user_id, _ = _context(evaluation_context)
        track = getattr(self.client, "track", None)
        if user_id is None or track is None:
            log.debug("flagsite: event %r not tracked (%s)", tracking_event_name,
                      "no targeting key" if user_id is None else "client without a server")
            return
        value = getattr(tracking_event_details, "value", None)
        attributes = getattr(tracking_event_details, "attributes", None) or {}
        track(tracking_event_name, user_id, value=value, properties=_plain(dict(attributes)) or None)

    def _loaded(self):
        client = self.client
        if isinstance(client, LocalFeatureFlagClient):
            return client.ready.is_set()
        return client.snapshot.version is not None or len(client.snapshot) > 0

    def _watch_loads(self):
        """Emit PROVIDER_READY / PROVIDER_CONFIGURATION_CHANGED when the evaluator loads a snapshot
        (wraps this evaluator's ``load``; the evaluator itself is unchanged)."""
        client = self.client
        load = client.load

        def load_and_announce(payload):
            old = client.snapshot
            load(payload)
            self._announce(old, client.snapshot)

        client.load = load_and_announce

    def _announce(self, old, new):
        if not self._ready.is_set():
            if self._initialized_once:  # initialize() gave up (ERROR status): recover now
                self._ready.set()
                self.emit_provider_ready(ProviderEventDetails(message=f"Flagsite snapshot version {new.version}"))
            return  # otherwise initialize() reports readiness and the SDK emits PROVIDER_READY
        changed = sorted(
            key for key in set(old.flags) | set(new.flags)
            if key not in old.flags or key not in new.flags or old.flags[key].state != new.flags[key].state
        )
        if old.segments != new.segments:
            changed = sorted(new.flags)
        if changed:
            self.emit_provider_configuration_changed(ProviderEventDetails(
                flags_changed=changed, message=f"Flagsite snapshot version {new.version}"))

    # ---- resolution ------------------------------------------------------------------------------

    def resolve_boolean_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, _is_bool, "boolean")

    def resolve_string_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, _is_str, "string")

    def resolve_integer_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, _as_int, "integer")

    def resolve_float_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, _as_float, "float")

    def resolve_object_details(self, flag_key, default_value, evaluation_context=None):
        return self._resolve(flag_key, default_value, evaluation_context, _is_object, "object")

    def _resolve(self, flag_key, default_value, evaluation_context, convert, type_name):
        if not self._loaded():
            raise ProviderNotReadyError("Flagsite: no flag snapshot loaded yet")
        snapshot = self.client.snapshot
        if flag_key not in snapshot:
            raise FlagNotFoundError(f"Flag '{flag_key}' was not found in environment '{snapshot.environment}'")
        user_id, context = _context(evaluation_context)
        if user_id is None and needs_targeting_key(snapshot, flag_key):
            raise TargetingKeyMissingError(f"Flag '{flag_key}' targets by user id: set a targeting key")
        result = snapshot.evaluate(flag_key, user_id, context)
        if is_multivariate(snapshot, flag_key) and (not result.enabled or result.value is None):
            value = default_value  # off: the code default (OFREP ADR 0006)
        else:
            value = result.value
            if not is_multivariate(snapshot, flag_key):
                value = bool(value)
            converted = convert(value)
            if converted is _MISMATCH:
                raise TypeMismatchError(
                    f"Flag '{flag_key}' is {type(value).__name__} {value!r}, not {type_name}")
            value = converted
        return FlagResolutionDetails(
            value=value,
            reason=openfeature_reason(result),
            variant=openfeature_variant(result),
            flag_metadata=_metadata(snapshot, result),
        )


_MISMATCH = object()


def _is_bool(value):
    return value if isinstance(value, bool) else _MISMATCH


def _is_str(value):
    return value if isinstance(value, str) else _MISMATCH


def _as_int(value):
    if isinstance(value, bool):
        return _MISMATCH
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return _MISMATCH


def _as_float(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _MISMATCH
    return float(value)


def _is_object(value):
    return value if isinstance(value, (dict, list)) else _MISMATCH


def _context(evaluation_context):
    """(user id, flat context) from an OpenFeature EvaluationContext."""
    if evaluation_context is None:
        return None, {}
    if not isinstance(evaluation_context, EvaluationContext):
        evaluation_context = EvaluationContext(attributes=dict(evaluation_context))
    context = {name: _plain(value) for name, value in (evaluation_context.attributes or {}).items()}
    return evaluation_context.targeting_key or None, context


def _plain(value):
    """Datetimes as ISO-8601 (the engine's before/after operators); containers recursively."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _metadata(snapshot, result):
    metadata = {"environment": snapshot.environment, "environmentVersion": snapshot.version,
                "enabled": result.enabled, "flagsiteReason": result.reason, "rule": result.rule}
    flag_version = snapshot.flags[result.flag_id].state.get("version")
    if isinstance(flag_version, int):
        metadata["flagVersion"] = flag_version
    return {name: value for name, value in metadata.items() if value is not None}
