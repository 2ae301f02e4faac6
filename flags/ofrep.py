"""OFREP: the OpenFeature Remote Evaluation Protocol (open-feature/protocol, service/openapi.yaml).

    POST /ofrep/v1/evaluate/flags/{key}   one flag      -> 200 evaluationSuccess | 400 | 404 FLAG_NOT_FOUND
    POST /ofrep/v1/evaluate/flags         every flag    -> 200 {"flags": [...]} + ETag | 304 | 400
    GET  /ofrep/v1/configuration          capabilities  -> 200 + ETag | 304

Body ``{"context": {"targetingKey": "user-123", "country": "US", ...}}``: the targeting key is the
engine's user id, every other context field an attribute. Keys: ``Authorization: Bearer <sdk key>``
or ``X-API-Key`` (an SDK key evaluates its own environment; a management token or a session reads
``?environment=``). Evaluation reads the in-process compiled snapshot only (no SQL once warm).

Errors answer OFREP's shapes, not the REST API's ``{"error": ...}``: ``{"key", "errorCode",
"errorDetails"}`` for a flag (400, 404), ``{"errorCode", "errorDetails"}`` otherwise (401, 403, 429
with ``Retry-After`` in seconds, ...). Reasons and variants: feature_flag_client/reasons.py.
"""

import hashlib
import json
import logging
import math

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from feature_flag_client.reasons import (
    OPENFEATURE_REASONS,
    is_multivariate,
    openfeature_reason,
    openfeature_variant,
)
from feature_flag_client.targeting import needs_targeting_key
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import counters as analytics_counters
from flags.snapshot import get_snapshot
from flagsite.api.common import environment_for
from flagsite.api.exceptions import exception_handler
from flagsite.api.parsers import JSONOnlyNegotiation
from flagsite.api.throttling import ApiRateThrottle, bulk_weight

logger = logging.getLogger(__name__)
TARGETING_KEY = "targetingKey"
FLAG_ERROR_CODES = ("PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL")


# ---- errors ------------------------------------------------------------------------------------


class OfrepError(exceptions.APIException):
    """An OFREP failure with its errorCode (shaped by ofrep_exception_handler)."""

    def __init__(self, status, error_code, details):
        self.status_code = status
        self.error_code = error_code
        super().__init__(details)


def ofrep_exception_handler(exc, context):
    """The REST handler decides status and headers (401 WWW-Authenticate, 429 Retry-After, 503 ...);
    this reshapes the body into OFREP's ``errorCode`` / ``errorDetails``."""
    key = context.get("kwargs", {}).get("key")
    if isinstance(exc, OfrepError):
        body = {"errorCode": exc.error_code, "errorDetails": str(exc.detail)}
        if key is not None:
            body = {"key": key, **body}
        return Response(body, status=exc.status_code)
    response = exception_handler(exc, context)
    if response is None:
        return None
    error = response.data.get("error", {}) if isinstance(response.data, dict) else {}
    code = error.get("code")
    body = {
        "errorCode": "PARSE_ERROR" if code == "parse_error" else "GENERAL",
        "errorDetails": error.get("message") or "Error.",
    }
    if key is not None and response.status_code == 400:
        body = {"key": key, **body}
    response.data = body
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        response["Retry-After"] = str(max(1, math.ceil(exc.wait)))
    return response


# ---- request and result ------------------------------------------------------------------------


def parse_request(data):
    """(user_id, attributes) from ``{"context": {"targetingKey": ..., ...}}``."""
    if data is None or data == "":
        data = {}
    if not isinstance(data, dict):
        raise OfrepError(400, "PARSE_ERROR", "The request body must be a JSON object.")
    context = data.get("context")
    if context is None:
        return None, {}
    if not isinstance(context, dict):
        raise OfrepError(400, "INVALID_CONTEXT", "context must be a JSON object.")
    attributes = dict(context)
    user_id = attributes.pop(TARGETING_KEY, None)
    if user_id is not None and not isinstance(user_id, str):
        raise OfrepError(400, "INVALID_CONTEXT", "context.targetingKey must be a string.")
    return user_id or None, attributes


def success(snapshot, result):
    """evaluationSuccess for an engine Evaluation. Boolean flags answer their boolean; a multivariate
    flag answers its variant's value, and omits ``value`` when it is off (or the variant carries none):
    OFREP ADR 0006, the provider then serves the caller's code default. A flag that names an off
    variant in this environment (docs/rules.md "Off variant") answers that variant's value while off."""
    body = {
        "key": result.flag_id,
        "reason": openfeature_reason(result),
        "variant": openfeature_variant(result),
    }
    if is_multivariate(snapshot, result.flag_id):
        if result.value is not None and (result.enabled or result.variant is not None):
            body["value"] = result.value
    else:
        body["value"] = bool(result.value)
    metadata = {
        "environment": snapshot.environment,
        "environmentVersion": snapshot.version,
        "enabled": result.enabled,
        "flagsiteReason": result.reason,
    }
    flag_version = snapshot.flags[result.flag_id].state.get("version")
    if isinstance(flag_version, int):
        metadata["flagVersion"] = flag_version
    if result.rule is not None:
        metadata["rule"] = result.rule
    body["metadata"] = {name: value for name, value in metadata.items() if value is not None}
    return body


def missing_key_details(key):
    return f"Flag '{key}' targets by user id: give context.targetingKey."


def _etags(header):
    return {tag.strip().removeprefix("W/") for tag in header.split(",")} if header else set()


def _etag(*parts):
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode())
    return f'"{digest.hexdigest()[:32]}"'


# ---- schema ------------------------------------------------------------------------------------

_SCALAR = [{"type": "boolean"}, {"type": "string"}, {"type": "number"}]


@extend_schema_field({
    "description": "The flag's value: a boolean for boolean flags, the variant's value (string, number, "
    "object or list) for multivariate flags. Absent when a multivariate flag is off: use the code default "
    "(OFREP ADR 0006).",
    "oneOf": [*_SCALAR, {"type": "object", "additionalProperties": {}}, {"type": "array", "items": {}}],
})
class OfrepValueField(serializers.JSONField):
    pass


@extend_schema_field({
    "type": "object",
    "additionalProperties": {"oneOf": _SCALAR},
    "description": "environment, environmentVersion, flagVersion, enabled, flagsiteReason (the engine's "
    "reason: KILLED, DISABLED, RULE_MISMATCH, TARGETING_MATCH, SPLIT, STATIC) and rule (index of the "
    "first rule that did not match).",
})
class OfrepMetadataField(serializers.DictField):
    pass


class OfrepContextSerializer(serializers.Serializer):
    targetingKey = serializers.CharField(
        required=False, allow_blank=True,
        help_text="The user id (percentage rollouts, user rules, variant stickiness).")

    class Meta:
        ref_name = None


class OfrepEvaluationSerializer(serializers.Serializer):
    context = OfrepContextSerializer(
        required=False,
        help_text="Evaluation context: targetingKey plus any attributes (country, plan, ip, userAgent, ...).")


class OfrepEvaluationSuccessSerializer(serializers.Serializer):
    key = serializers.CharField()
    reason = serializers.ChoiceField(OPENFEATURE_REASONS, help_text="KILLED/DISABLED -> DISABLED, targeting did "
                                     "not match -> DEFAULT, rules matched -> TARGETING_MATCH, a percentage or "
                                     "weighted variant decided -> SPLIT, no rules -> STATIC.")
    variant = serializers.CharField(help_text="The variant key; 'on'/'off' for boolean flags, 'off' for an off "
                                    "multivariate flag.")
    value = OfrepValueField(required=False)
    metadata = OfrepMetadataField()


class OfrepEvaluationFailureSerializer(serializers.Serializer):
    key = serializers.CharField()
    errorCode = serializers.ChoiceField(FLAG_ERROR_CODES)
    errorDetails = serializers.CharField()


class OfrepFlagNotFoundSerializer(serializers.Serializer):
    key = serializers.CharField()
    errorCode = serializers.ChoiceField(["FLAG_NOT_FOUND"])
    errorDetails = serializers.CharField()


class OfrepErrorSerializer(serializers.Serializer):
    errorCode = serializers.CharField(help_text="PARSE_ERROR, INVALID_CONTEXT or GENERAL")
    errorDetails = serializers.CharField()


class OfrepBulkEvaluationSuccessSerializer(serializers.Serializer):
    flags = PolymorphicProxySerializer(
        component_name="OfrepBulkEvaluationItem",
        serializers=[OfrepEvaluationSuccessSerializer, OfrepEvaluationFailureSerializer],
        resource_type_field_name=None,
        many=True,
    )


class OfrepPollingSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    minPollingIntervalMs = serializers.IntegerField()


class OfrepCacheInvalidationSerializer(serializers.Serializer):
    polling = OfrepPollingSerializer()


class OfrepFlagEvaluationSerializer(serializers.Serializer):
    supportedTypes = serializers.ListField(child=serializers.ChoiceField(["int", "float", "string", "boolean", "object"]))


class OfrepCapabilitiesSerializer(serializers.Serializer):
    cacheInvalidation = OfrepCacheInvalidationSerializer()
    flagEvaluation = OfrepFlagEvaluationSerializer()


class OfrepConfigurationSerializer(serializers.Serializer):
    name = serializers.CharField()
    capabilities = OfrepCapabilitiesSerializer()




def _general(description, **kwargs):
    return OpenApiResponse(OfrepErrorSerializer, description=description, **kwargs)


def _common_errors():
    return {
        401: _general("No key, or an unknown or revoked one"),
        403: _general("The key may not evaluate (another environment, or a user without view permission)"),
        413: _general("Request body too large"),
        415: _general("The body is not JSON"),
        429: _general("Rate limited (FLAGS_OFREP_RATE_LIMIT); see Retry-After"),
        503: _general("A dependency (database) is unavailable"),
    }


ENVIRONMENT_PARAM = OpenApiParameter(
    "environment", str, description="Management tokens and sessions only: the environment to evaluate "
    "(default FLAGS_DEFAULT_ENVIRONMENT). An SDK key always evaluates its own environment.")
ETAG = OpenApiParameter("ETag", str, OpenApiParameter.HEADER, response=[200, 304],
                        description="Entity tag of the answer, for If-None-Match")
RETRY_AFTER = OpenApiParameter("Retry-After", str, OpenApiParameter.HEADER, response=[429],
                               description="Seconds to wait before retrying")
IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match", str, OpenApiParameter.HEADER, description="An ETag from an earlier answer: 304 when unchanged.")


# ---- views -------------------------------------------------------------------------------------


class OfrepApi(APIView):
    content_negotiation_class = JSONOnlyNegotiation
    throttle_classes = [ApiRateThrottle]  # the REST limiter, in its own scope
    rate_limit_scope = "ofrep"  # FLAGS_OFREP_RATE_LIMIT
    sdk_allowed = True
    required_perms = {"POST": ["flags.view_flag"], "GET": ["flags.view_flag"]}

    def get_exception_handler(self):
        return ofrep_exception_handler

    def snapshot(self, request):
        return get_snapshot(environment_for(request, None, check_exists=False))


class OfrepEvaluateFlagApi(OfrepApi):
    @extend_schema(
        operation_id="ofrep_evaluate_flag",
        tags=["OFREP"],
        summary="OFREP single flag evaluation",
        parameters=[ENVIRONMENT_PARAM, RETRY_AFTER],
        request=OfrepEvaluationSerializer,
        responses={
            200: OfrepEvaluationSuccessSerializer,
            400: OpenApiResponse(OfrepEvaluationFailureSerializer, description="PARSE_ERROR, INVALID_CONTEXT, "
                                 "TARGETING_KEY_MISSING (the flag targets by user id) or GENERAL"),
            404: OpenApiResponse(OfrepFlagNotFoundSerializer, description="Flag not found"),
            **_common_errors(),
        },
        examples=[OpenApiExample("request", request_only=True,
                                 value={"context": {"targetingKey": "user-123", "country": "US"}})],
    )
    def post(self, request, key):
        user_id, attributes = parse_request(request.data)
        snapshot = self.snapshot(request)
        problem = flag_problem(snapshot, key, user_id)
        if problem is not None:
            raise problem
        return Response(evaluate_flag(snapshot, key, user_id, attributes))


def flag_problem(snapshot, key, user_id):
    """The OfrepError a single-flag evaluation answers instead of a result (unknown flag, missing
    targeting key), or None."""
    if key not in snapshot:
        return OfrepError(404, "FLAG_NOT_FOUND", f"Flag '{key}' was not found in environment "
                          f"'{snapshot.environment}'.")
    if user_id is None and needs_targeting_key(snapshot, key):
        return OfrepError(400, "TARGETING_KEY_MISSING", missing_key_details(key))
    return None


def evaluate_flag(snapshot, key, user_id, attributes):
    """evaluationSuccess for one flag (flag_problem() found none), counted."""
    result = snapshot.evaluate(key, user_id, attributes)
    analytics_counters.record(result, user_id, attributes)
    return success(snapshot, result)


class OfrepEvaluateBulkApi(OfrepApi):
    def rate_weight(self, request):
        """Charged by the flags it evaluates (every flag of the environment), as REST bulk is."""
        return bulk_weight(len(self.snapshot(request).table))

    @extend_schema(
        operation_id="ofrep_evaluate_flags",
        tags=["OFREP"],
        summary="OFREP bulk evaluation (every flag of the environment)",
        parameters=[ENVIRONMENT_PARAM, IF_NONE_MATCH, ETAG, RETRY_AFTER],
        request=OfrepEvaluationSerializer,
        responses={
            200: OpenApiResponse(
                OfrepBulkEvaluationSuccessSerializer,
                description="Every flag; a flag that needs a targeting key the context lacks answers "
                "an evaluationFailure item with TARGETING_KEY_MISSING.",
            ),
            304: OpenApiResponse(description="Not modified (If-None-Match matched the ETag)"),
            400: _general("PARSE_ERROR, INVALID_CONTEXT or GENERAL"),
            **_common_errors(),
        },
    )
    def post(self, request):
        user_id, attributes = parse_request(request.data)
        status, data, headers = evaluate_all(self.snapshot(request), user_id, attributes,
                                             request.headers.get("If-None-Match", ""))
        return Response(data, status=status, headers=headers)


def evaluate_all(snapshot, user_id, attributes, if_none_match):
    """(status, body data, headers) of a bulk evaluation: every flag, counted; 304 when the client's
    If-None-Match holds this answer's ETag."""
    flags = []
    for key in snapshot.table:
        if user_id is None and needs_targeting_key(snapshot, key):
            flags.append({"key": key, "errorCode": "TARGETING_KEY_MISSING",
                          "errorDetails": missing_key_details(key)})
            continue
        result = snapshot.evaluate(key, user_id, attributes)
        analytics_counters.record(result, user_id, attributes)
        flags.append(success(snapshot, result))
    # The ETag hashes the answer itself (environment, version and every evaluated flag for this
    # context): rules that read the clock or draw at random cannot leave a client on a stale 304.
    etag = _etag(snapshot.environment, snapshot.version, flags)
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if {etag, "*"} & _etags(if_none_match):
        return 304, None, headers
    return 200, {"flags": flags}, headers


class OfrepConfigurationApi(OfrepApi):
    @extend_schema(
        operation_id="ofrep_configuration",
        tags=["OFREP"],
        summary="OFREP provider configuration",
        parameters=[IF_NONE_MATCH, ETAG, RETRY_AFTER],
        responses={
            200: OfrepConfigurationSerializer,
            304: OpenApiResponse(description="Not modified"),
            **{status: response for status, response in _common_errors().items() if status not in (413, 415)},
        },
    )
    def get(self, request):
        interval = max(1000, int(getattr(settings, "FLAGS_MAX_STALENESS_MS", 100)))
        body = {
            "name": "Flagsite",
            "capabilities": {
                "cacheInvalidation": {"polling": {"enabled": True, "minPollingIntervalMs": interval}},
                "flagEvaluation": {"supportedTypes": ["boolean", "string", "int", "float", "object"]},
            },
        }
        etag = _etag(body)
        if {etag, "*"} & _etags(request.headers.get("If-None-Match", "")):
            return Response(status=304, headers={"ETag": etag})
        return Response(body, headers={"ETag": etag})

