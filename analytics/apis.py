"""Analytics REST views: per-flag series, a project's metrics, and SDK local-mode count reports.

The reads are the current project's: /api/analytics/... is the default project's, and
/api/projects/<project>/analytics/... (projects/urls.py) any project's; SDK reports count in the
key's project."""

import time

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import counters, selectors
from flags import selectors as flag_selectors
from flags.errors import ValidationFailed
from flags.snapshot import get_snapshot
from flagsite.api.common import environment_for
from flagsite.api.parsers import JSONOnlyNegotiation

ALLOWED_RANGES = ", ".join(selectors.TIME_RANGES)
MAX_REPORTED_ENTRIES = 10_000
MAX_REPORTED_COUNT = 10**9
MAX_REPORTED_EXPOSURES = 10_000  # the SDK's LocalEvaluator.MAX_EXPOSURES
MAX_EXPOSURE_AGE = 7 * 24 * 3600  # seconds: an SDK that was cut off for longer has lost them


class FlagAnalyticsApi(APIView):
    required_perms = {"GET": ["flags.view_flag"]}

    @extend_schema(
        parameters=[
            OpenApiParameter("timeRange", str, enum=list(selectors.TIME_RANGES),
                             description="1h and 24h: hourly points; 7d and 30d: daily points (default 24h)"),
            OpenApiParameter("environment", str, description="One environment (default: all together)"),
        ],
        responses=dict,
    )
    def get(self, request, key):
        time_range = request.query_params.get("timeRange", "24h")
        if time_range not in selectors.TIME_RANGES:
            raise ValidationFailed(fields={"timeRange": [
                f"'{time_range[:40]}' is not a time range; use one of {ALLOWED_RANGES}."]})
        environment = request.query_params.get("environment") or None
        if environment:
            flag_selectors.environment_get(environment)  # unknown -> 400
        flag = flag_selectors.flag_get(key)  # unknown -> 404
        data = selectors.flag_series(flag_key=flag.key, time_range=time_range, environment=environment)
        data["stale"] = flag.key in selectors.stale_flag_keys()
        return Response(data)


class MetricsApi(APIView):
    required_perms = {"GET": ["flags.view_flag"]}

    @extend_schema(responses=dict)
    def get(self, request):
        return Response(selectors.metrics())


ReportSchema = inline_serializer("SdkMetricsReport", {
    "evaluations": serializers.ListField(child=inline_serializer("SdkMetricsEntry", {
        "flagId": serializers.CharField(),
        "variant": serializers.CharField(allow_null=True, required=False),
        "enabled": serializers.BooleanField(),
        "count": serializers.IntegerField(min_value=1),
    })),
})


class SdkMetricsApi(APIView):
    """Evaluation counts and exposures from an SDK's local mode, added to the same counters and
    exposure buffer as server evaluations. Flags unknown in the key's environment are ignored (and
    listed in the answer); an exposure to a variant the flag does not have is a 400."""

    content_negotiation_class = JSONOnlyNegotiation
    sdk_allowed = True
    required_perms = {"POST": ["flags.view_flag"]}

    @extend_schema(
        parameters=[OpenApiParameter("environment", str)],
        request=ReportSchema,
        responses={202: inline_serializer("SdkMetricsAccepted", {
            "accepted": serializers.IntegerField(),
            "ignored": serializers.ListField(child=serializers.CharField()),
        })},
    )
    def post(self, request):
        entries = _parse_report(request.data)
        environment = environment_for(request, check_exists=False)
        snapshot = get_snapshot(environment)  # unknown environment -> 400
        exposures = _parse_exposures(request.data.get("exposures"), snapshot)
        accepted, ignored = 0, set()
        for entry in entries:
            if entry["flagId"] not in snapshot:
                ignored.add(entry["flagId"])
                continue
            counters.record_counts(environment=snapshot.environment, flag_id=entry["flagId"],
                                   variant=entry["variant"], enabled=entry["enabled"], count=entry["count"])
            accepted += entry["count"]
        known = [row for row in exposures if row[1] in snapshot]
        ignored.update(row[1] for row in exposures if row[1] not in snapshot)
        counters.recorder.record_exposures(known)
        return Response({"accepted": accepted, "ignored": sorted(ignored)[:100]}, status=202)


def _parse_exposures(entries, snapshot):
    """[environment, flag, user, first variant, last variant, first seen, last seen, changes] rows
    of a report's exposures (experiments/buffers.py), or a 400 naming each bad field."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValidationFailed(fields={"exposures": ["Expected a list."]})
    if len(entries) > MAX_REPORTED_EXPOSURES:
        raise ValidationFailed(fields={"exposures": [f"At most {MAX_REPORTED_EXPOSURES} exposures per report."]})
    now = int(time.time())
    errors, rows = {}, []
    for index, entry in enumerate(entries):
        path = f"exposures[{index}]"
        if not isinstance(entry, dict):
            errors[path] = ["Expected an object."]
            continue
        flag_id, user_id = entry.get("flagId"), entry.get("userId")
        first, last = entry.get("variant"), entry.get("lastVariant")
        first_seen, last_seen, changes = entry.get("firstSeen"), entry.get("lastSeen"), entry.get("changes")
        if not isinstance(flag_id, str) or not flag_id or len(flag_id) > 128:
            errors[f"{path}.flagId"] = ["A flag key is required."]
            continue
        if not isinstance(user_id, str) or not user_id or len(user_id) > 256:
            errors[f"{path}.userId"] = ["A user id of at most 256 characters is required."]
        compiled = snapshot.flags.get(flag_id)
        variants = {v.get("key") for v in (compiled.state.get("variants") or ())} if compiled else None
        for field, variant in (("variant", first), ("lastVariant", last)):
            if not isinstance(variant, str) or (variants is not None and variant not in variants):
                errors[f"{path}.{field}"] = [f"Expected a variant of '{flag_id[:128]}'."]
        for field, second in (("firstSeen", first_seen), ("lastSeen", last_seen)):
            if isinstance(second, bool) or not isinstance(second, int) or not now - MAX_EXPOSURE_AGE <= second <= now + 300:
                errors[f"{path}.{field}"] = ["Expected seconds since the epoch within the last 7 days."]
        if isinstance(first_seen, int) and isinstance(last_seen, int) and last_seen < first_seen:
            errors.setdefault(f"{path}.lastSeen", ["Must not be before firstSeen."])
        if isinstance(changes, bool) or not isinstance(changes, int) or not 0 <= changes <= MAX_REPORTED_COUNT:
            errors[f"{path}.changes"] = [f"Expected an integer from 0 to {MAX_REPORTED_COUNT}."]
        rows.append([snapshot.environment, flag_id, user_id, first, last, first_seen, last_seen, changes])
    if errors:
        raise ValidationFailed(fields=errors)
    return rows


def _parse_report(data):
    if not isinstance(data, dict):
        raise ValidationFailed(fields={"": ["Expected a JSON object with 'evaluations'."]})
    entries = data.get("evaluations")
    if not isinstance(entries, list):
        raise ValidationFailed(fields={"evaluations": ["Expected a list."]})
    if len(entries) > MAX_REPORTED_ENTRIES:
        raise ValidationFailed(fields={"evaluations": [f"At most {MAX_REPORTED_ENTRIES} entries per report."]})
    errors, parsed = {}, []
    for index, entry in enumerate(entries):
        path = f"evaluations[{index}]"
        if not isinstance(entry, dict):
            errors[path] = ["Expected an object."]
            continue
        flag_id, variant = entry.get("flagId"), entry.get("variant")
        enabled, count = entry.get("enabled"), entry.get("count")
        if not isinstance(flag_id, str) or not flag_id or len(flag_id) > 128:
            errors[f"{path}.flagId"] = ["A flag key is required."]
        if variant is not None and (not isinstance(variant, str) or len(variant) > 128):
            errors[f"{path}.variant"] = ["Expected a variant key or null."]
        if not isinstance(enabled, bool):
            errors[f"{path}.enabled"] = ["Expected true or false."]
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_REPORTED_COUNT:
            errors[f"{path}.count"] = [f"Expected an integer from 1 to {MAX_REPORTED_COUNT}."]
        parsed.append({"flagId": flag_id, "variant": variant or None, "enabled": enabled, "count": count})
    if errors:
        raise ValidationFailed(fields=errors)
    return parsed
