"""REST: POST /api/events, the batch of events an application tracked (SDK key, or the token of
a user with flags.view_flag, like the SDK's evaluation reports). Validates, queues in process,
answers 202: the database is written later, in bulk, by the flush (experiments/buffers.py).

Auth, permissions (``sdk_allowed``), rate limits (the ``evaluate`` scope, weighed like a bulk
evaluation: 1 + events / 100) and the error shape are the ones every evaluation route uses
(flagsite/api). An SDK key posts to its own environment; a token may name one with ?environment=.
"""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments import buffers
from experiments.ingest import TooManyEvents, parse_events
from flags.snapshot import get_snapshot
from flagsite.api.common import environment_for
from flagsite.api.exceptions import PayloadTooLarge, error_response
from flagsite.api.parsers import JSONOnlyNegotiation, refuse_declared_length_over
from flagsite.api.throttling import bulk_weight

BUFFER_FULL_RETRY_AFTER = 5

EventSchema = inline_serializer("TrackedEvent", {
    "event": serializers.CharField(max_length=128, help_text="Event name, e.g. 'purchase'"),
    "userId": serializers.CharField(max_length=256),
    "value": serializers.FloatField(required=False, allow_null=True, help_text="e.g. revenue"),
    "timestamp": serializers.DateTimeField(required=False, help_text="ISO 8601 (or epoch seconds); default: now"),
    "properties": serializers.DictField(required=False, allow_null=True),
    "id": serializers.CharField(required=False, max_length=128,
                                help_text="Unique per event: a batch sent again with the same ids adds nothing"),
})
EventsSchema = inline_serializer("TrackedEvents", {"events": serializers.ListField(child=EventSchema)})


class EventsApi(APIView):
    content_negotiation_class = JSONOnlyNegotiation
    sdk_allowed = True
    required_perms = {"POST": ["flags.view_flag"]}

    def rate_weight(self, request):
        data = request.data
        events = data.get("events") if isinstance(data, dict) else None
        return bulk_weight(min(len(events), settings.FLAGS_EVENTS_MAX_BATCH)) if isinstance(events, list) else 1

    @extend_schema(
        parameters=[OpenApiParameter("environment", str, description="Environment key (SDK keys: their own)")],
        request=EventsSchema,
        responses={202: inline_serializer("TrackedEventsAccepted", {"accepted": serializers.IntegerField()})},
    )
    def post(self, request):
        limit = settings.FLAGS_EVENTS_MAX_BYTES
        refuse_declared_length_over(request, limit,
                                    f"Request body is larger than {limit} bytes (FLAGS_EVENTS_MAX_BYTES).")
        environment = environment_for(request, check_exists=False)
        snapshot = get_snapshot(environment)  # in process; an unknown environment -> 400
        try:
            rows = parse_events(request.data, snapshot.environment)
        except TooManyEvents as exc:
            raise PayloadTooLarge(exc.message) from None
        if rows and not buffers.events.add(rows):
            return error_response(503, "unavailable", "Too many events waiting to be written; retry shortly.",
                                  headers={"Retry-After": str(BUFFER_FULL_RETRY_AFTER)})
        return Response({"accepted": len(rows)}, status=202)
