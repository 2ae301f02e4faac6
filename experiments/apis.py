"""REST: the experiments app. Metrics and experiments (management: list, create, start, stop,
results; every write through experiments/services.py), and POST /api/events, the batch of events an application tracked (SDK key, or the token of
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

from experiments import analysis, buffers, services
from experiments.ingest import TooManyEvents, parse_events
from experiments.models import Experiment, Metric
from flags.errors import NotFound
from flags.serializers import KEY_REGEX, MAX_DESCRIPTION, Bool, StrictSerializer, Text
from flags.snapshot import get_snapshot
from flagsite.api.common import actor_for, environment_for, key_from, validate
from flagsite.api.exceptions import PayloadTooLarge, error_response
from flagsite.api.pagination import Pagination
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


# -- metrics and experiments (management: users with the experiments app's model permissions) ----

CHANGE_EXPERIMENT = "experiments.change_experiment"


def metric_get(key):
    metric = Metric.objects.filter(key=key).first()
    if metric is None:
        raise NotFound(f"Metric '{key}' not found.")
    return metric


def experiment_get(key):
    experiment = Experiment.objects.select_related("flag", "environment", "primary_metric").filter(key=key).first()
    if experiment is None:
        raise NotFound(f"Experiment '{key}' not found.")
    return experiment


class MetricSerializer(StrictSerializer):
    ignored_fields = frozenset({"id", "createdAt", "updatedAt"})
    key = serializers.RegexField(KEY_REGEX, required=False)
    name = Text(max_length=200)
    description = Text(allow_blank=True, default="", max_length=MAX_DESCRIPTION)
    kind = serializers.ChoiceField(choices=Metric.Kind.values,
                                   help_text="conversion (0/1 per user), count or sum per user, or ratio")
    event = Text(max_length=128)
    denominatorEvent = Text(allow_blank=True, default="", max_length=128, help_text="ratio metrics only")
    windowHours = serializers.IntegerField(min_value=1, max_value=services.MAX_WINDOW_HOURS, allow_null=True,
                                           default=None, help_text="after first exposure; null: until the stop")
    higherIsBetter = Bool(default=True)


class MetricOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="key")
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField()
    event = serializers.CharField()
    denominatorEvent = serializers.CharField(source="denominator_event")
    windowHours = serializers.IntegerField(source="window_hours", allow_null=True)
    higherIsBetter = serializers.BooleanField(source="higher_is_better")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


SNAKE = {"denominatorEvent": "denominator_event", "windowHours": "window_hours", "higherIsBetter": "higher_is_better"}


class MetricListCreateApi(APIView):
    required_perms = {"GET": ["experiments.view_metric"], "POST": ["experiments.add_metric"]}
    pagination_class = Pagination

    @extend_schema(responses=MetricOutputSerializer(many=True))
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(Metric.objects.order_by("key"), request, view=self)
        return paginator.get_paginated_response(MetricOutputSerializer(page, many=True).data)

    @extend_schema(request=MetricSerializer, responses={201: MetricOutputSerializer})
    def post(self, request):
        data = validate(MetricSerializer, request.data)
        key = key_from(data)
        metric = services.metric_create(actor=actor_for(request), key=key,
                                        **{SNAKE.get(k, k): v for k, v in data.items()})
        return Response(MetricOutputSerializer(metric).data, status=201)


class MetricDetailApi(APIView):
    required_perms = {"GET": ["experiments.view_metric"], "PATCH": ["experiments.change_metric"],
                      "DELETE": ["experiments.delete_metric"]}

    @extend_schema(responses=MetricOutputSerializer)
    def get(self, request, key):
        return Response(MetricOutputSerializer(metric_get(key)).data)

    @extend_schema(request=MetricSerializer(partial=True), responses=MetricOutputSerializer)
    def patch(self, request, key):
        data = validate(MetricSerializer, request.data, partial=True)
        data.pop("key", None)
        metric = services.metric_update(actor=actor_for(request), metric=metric_get(key), data=data)
        return Response(MetricOutputSerializer(metric).data)

    @extend_schema(responses={204: None})
    def delete(self, request, key):
        services.metric_delete(actor=actor_for(request), metric=metric_get(key))
        return Response(status=204)


class ExperimentInputSerializer(StrictSerializer):
    ignored_fields = frozenset({"id", "status", "weights", "startedAt", "stoppedAt", "shippedVariant", "createdAt"})
    key = serializers.RegexField(KEY_REGEX, required=False)
    name = Text(max_length=200)
    hypothesis = Text(allow_blank=True, default="", max_length=MAX_DESCRIPTION)
    flag = Text(max_length=128, help_text="A multivariate flag's key")
    environment = Text(max_length=64)
    control = Text(max_length=128, help_text="One of the flag's variants")
    primaryMetric = Text(max_length=128)
    secondaryMetrics = serializers.ListField(child=Text(max_length=128), default=list)
    guardrailMetrics = serializers.ListField(child=Text(max_length=128), default=list)


class ExperimentOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="key")
    key = serializers.CharField()
    name = serializers.CharField()
    hypothesis = serializers.CharField()
    flag = serializers.CharField(source="flag.key")
    environment = serializers.CharField(source="environment.key")
    control = serializers.CharField()
    primaryMetric = serializers.CharField(source="primary_metric.key")
    secondaryMetrics = serializers.SerializerMethodField()
    guardrailMetrics = serializers.SerializerMethodField()
    status = serializers.CharField()
    weights = serializers.DictField(child=serializers.FloatField(), help_text="variant -> share, set at the start")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    stoppedAt = serializers.DateTimeField(source="stopped_at", allow_null=True)
    shippedVariant = serializers.CharField(source="shipped_variant")
    createdAt = serializers.DateTimeField(source="created_at")

    def get_secondaryMetrics(self, obj) -> list[str]:
        return [m.key for m in obj.secondary_metrics.all()]

    def get_guardrailMetrics(self, obj) -> list[str]:
        return [m.key for m in obj.guardrail_metrics.all()]


def experiment_queryset():
    return (Experiment.objects.select_related("flag", "environment", "primary_metric")
            .prefetch_related("secondary_metrics", "guardrail_metrics"))


class ExperimentListCreateApi(APIView):
    required_perms = {"GET": ["experiments.view_experiment"], "POST": ["experiments.add_experiment"]}
    pagination_class = Pagination

    @extend_schema(responses=ExperimentOutputSerializer(many=True))
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(experiment_queryset(), request, view=self)
        return paginator.get_paginated_response(ExperimentOutputSerializer(page, many=True).data)

    @extend_schema(request=ExperimentInputSerializer, responses={201: ExperimentOutputSerializer})
    def post(self, request):
        data = validate(ExperimentInputSerializer, request.data)
        key = key_from(data)
        experiment = services.experiment_create(
            actor=actor_for(request), key=key, name=data["name"], hypothesis=data["hypothesis"], flag=data["flag"],
            environment=data["environment"], control=data["control"], primary_metric=data["primaryMetric"],
            secondary_metrics=data["secondaryMetrics"], guardrail_metrics=data["guardrailMetrics"])
        return Response(ExperimentOutputSerializer(experiment).data, status=201)


class ExperimentDetailApi(APIView):
    required_perms = {"GET": ["experiments.view_experiment"]}

    @extend_schema(responses=ExperimentOutputSerializer)
    def get(self, request, key):
        return Response(ExperimentOutputSerializer(experiment_get(key)).data)


class ExperimentStartApi(APIView):
    required_perms = {"POST": [CHANGE_EXPERIMENT]}

    @extend_schema(request=None, responses=ExperimentOutputSerializer)
    def post(self, request, key):
        experiment = services.experiment_start(actor=actor_for(request), experiment=experiment_get(key))
        return Response(ExperimentOutputSerializer(experiment).data)


class StopInputSerializer(StrictSerializer):
    ship = Text(max_length=128, required=False, allow_null=True,
                help_text="A variant to roll out to everyone (weight 100, the others 0); needs flags.change_flag")
    reason = Text(allow_blank=True, default="", max_length=1000)


class ExperimentStopApi(APIView):
    @property
    def required_perms(self):
        """Shipping a variant changes the flag: it also needs the flag permission."""
        data = self.request.data if self.request is not None else None
        ship = isinstance(data, dict) and data.get("ship") is not None
        return {"POST": [CHANGE_EXPERIMENT, *(["flags.change_flag"] if ship else [])]}

    @extend_schema(request=StopInputSerializer, responses=ExperimentOutputSerializer)
    def post(self, request, key):
        data = validate(StopInputSerializer, request.data)
        experiment = services.experiment_stop(actor=actor_for(request), experiment=experiment_get(key),
                                              ship=data.get("ship"), reason=data["reason"])
        return Response(ExperimentOutputSerializer(experiment).data)


class ExperimentResultsApi(APIView):
    """Computed at each call from the raw exposures and events (one aggregate query)."""

    required_perms = {"GET": ["experiments.view_experiment"]}

    @extend_schema(responses=inline_serializer("ExperimentResults", {
        "experiment": serializers.CharField(), "status": serializers.CharField(),
        "users": serializers.IntegerField(), "control": serializers.CharField(),
        "variants": serializers.ListField(child=serializers.DictField()),
        "srm": serializers.DictField(allow_null=True, help_text="sample ratio mismatch check (chi-square)"),
        "verdict": serializers.ListField(child=serializers.CharField()),
        "metrics": serializers.ListField(child=serializers.DictField(),
                                         help_text="per metric: a row per variant with uplift, intervals, chance "
                                                   "to beat control, p-values and the verdict"),
        "exposuresByDay": serializers.ListField(child=serializers.DictField()),
    }))
    def get(self, request, key):
        return Response(analysis.experiment_results(experiment_get(key)))
