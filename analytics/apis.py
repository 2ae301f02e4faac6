"""Analytics REST views: per-flag series, a project's metrics, and SDK local-mode count reports.

The reads are the current project's: /api/analytics/... is the default project's, and
/api/projects/<project>/analytics/... (projects/urls.py) any project's; SDK reports count in the
key's project."""

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
    """Evaluation counts from an SDK's local mode, added to the same counters as server evaluations.
    Flags unknown in the key's environment are ignored (and listed in the answer)."""

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
        accepted, ignored = 0, set()
        for entry in entries:
            if entry["flagId"] not in snapshot:
                ignored.add(entry["flagId"])
                continue
            counters.record_counts(environment=snapshot.environment, flag_id=entry["flagId"],
                                   variant=entry["variant"], enabled=entry["enabled"], count=entry["count"])
            accepted += entry["count"]
        return Response({"accepted": accepted, "ignored": sorted(ignored)[:100]}, status=202)


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
