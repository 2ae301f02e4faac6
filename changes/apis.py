"""REST views for scheduled changes and rollout plans (/api/scheduled-changes, /api/rollout-plans, and
the same under /api/projects/<project>/). Thin: validate -> service/selector -> serialize."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from changes import selectors, services
from changes.models import Operation, Status
from flags.serializers import StrictSerializer, Text
from flagsite.api.common import actor_for, environment_for, validate
from flagsite.api.pagination import Pagination
from projects import scope
from projects.models import DEFAULT

SCHEDULE_PERMS = ["changes.add_scheduledchange", "flags.change_flag"]
PLAN_PERMS = ["changes.add_rolloutplan", "flags.change_flag"]


def _environment(request, requested):
    """The body's environment, else ?environment=, else the default; an unknown one is the service's
    field error (with the others), not a 400 of its own."""
    return environment_for(request, requested, check_exists=False)


def _prefix():
    return "/api" if scope.current() == DEFAULT else f"/api/projects/{scope.current()}"


class ScheduledChangeOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    flag = serializers.CharField(source="flag.key")
    environment = serializers.CharField(source="environment.key")
    action = serializers.CharField(source="operation")
    change = serializers.JSONField(source="payload")
    runAt = serializers.DateTimeField(source="run_at", help_text="UTC")
    timezone = serializers.CharField(help_text="The author's IANA time zone, in which runAtLocal is shown")
    runAtLocal = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=Status.choices)
    author = serializers.CharField(source="author_label")
    baseVersion = serializers.IntegerField(source="base_version", allow_null=True,
                                           help_text="The flag state's version the change was scheduled against")
    result = serializers.CharField()
    appliedAt = serializers.DateTimeField(source="applied_at", allow_null=True)
    plan = serializers.IntegerField(source="plan_id", allow_null=True)
    step = serializers.IntegerField(allow_null=True)
    changeRequest = serializers.IntegerField(source="change_request_id", allow_null=True,
                                             help_text="The approved change request it applies, if any")
    createdAt = serializers.DateTimeField(source="created_at")

    def get_runAtLocal(self, change) -> str:
        return selectors.local_time(change.run_at, change.timezone)


class ChangeSerializer(serializers.Serializer):
    """The change: `action` plus its fields. update: the REST PATCH body's fields (enabled, rules,
    offVariant, name, description, tags, variants, salt, stickiness); kill: reason (required);
    restore: reason (optional); rollout: percentage; enable, disable, archive: nothing more."""

    action = serializers.ChoiceField(choices=Operation.choices)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Expected an object with an action.")
        result = super().to_internal_value(data)
        return {"action": result["action"], "payload": {k: v for k, v in data.items() if k != "action"}}


class ScheduledChangeInputSerializer(StrictSerializer):
    flag = Text(max_length=128)
    environment = Text(max_length=64, required=False, help_text="Default: ?environment=, else the default one")
    change = ChangeSerializer()
    runAt = Text(max_length=64, help_text="ISO 8601; without an offset it is read in `timezone`; in the future")
    timezone = Text(max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin (default UTC)")


class RescheduleInputSerializer(StrictSerializer):
    runAt = Text(max_length=64)
    timezone = Text(max_length=64, required=False)


class CancelInputSerializer(StrictSerializer):
    reason = Text(max_length=2000, allow_blank=True, default="")


class ScheduledChangeListCreateApi(APIView):
    required_perms = {"GET": ["changes.view_scheduledchange"], "POST": SCHEDULE_PERMS}
    pagination_class = Pagination

    @extend_schema(parameters=[OpenApiParameter("flag", str), OpenApiParameter("environment", str),
                               OpenApiParameter("status", str, enum=Status.values)],
                   responses=ScheduledChangeOutputSerializer(many=True))
    def get(self, request):
        params = request.query_params
        changes = selectors.scheduled_change_list(flag=params.get("flag"), environment=params.get("environment"),
                                                  status=params.get("status"))
        paginator = Pagination()
        page = paginator.paginate_queryset(changes, request, view=self)
        return paginator.get_paginated_response(ScheduledChangeOutputSerializer(page, many=True).data)

    @extend_schema(request=ScheduledChangeInputSerializer, responses={201: ScheduledChangeOutputSerializer})
    def post(self, request):
        data = validate(ScheduledChangeInputSerializer, request.data)
        change = services.scheduled_change_create(
            actor=actor_for(request), flag=data["flag"], environment=_environment(request, data.pop("environment", None)),
            operation=data["change"]["action"], payload=data["change"]["payload"], run_at=data["runAt"],
            timezone=data["timezone"])
        return Response(ScheduledChangeOutputSerializer(change).data, status=201,
                        headers={"Location": f"{_prefix()}/scheduled-changes/{change.pk}"})


class ScheduledChangeDetailApi(APIView):
    required_perms = {"GET": ["changes.view_scheduledchange"]}

    @extend_schema(responses=ScheduledChangeOutputSerializer)
    def get(self, request, change_id):
        return Response(ScheduledChangeOutputSerializer(selectors.scheduled_change_get(change_id)).data)


class ScheduledChangeCancelApi(APIView):
    required_perms = {"POST": ["changes.change_scheduledchange"]}

    @extend_schema(request=CancelInputSerializer, responses=ScheduledChangeOutputSerializer)
    def post(self, request, change_id):
        data = validate(CancelInputSerializer, request.data)
        change = selectors.scheduled_change_get(change_id)
        change = services.scheduled_change_cancel(actor=actor_for(request), change=change, reason=data["reason"])
        return Response(ScheduledChangeOutputSerializer(change).data)


class ScheduledChangeRescheduleApi(APIView):
    required_perms = {"POST": ["changes.change_scheduledchange"]}

    @extend_schema(request=RescheduleInputSerializer, responses=ScheduledChangeOutputSerializer)
    def post(self, request, change_id):
        data = validate(RescheduleInputSerializer, request.data)
        change = selectors.scheduled_change_get(change_id)
        change = services.scheduled_change_reschedule(actor=actor_for(request), change=change, run_at=data["runAt"],
                                                      timezone=data.get("timezone"))
        return Response(ScheduledChangeOutputSerializer(change).data)


# -- rollout plans --------------------------------------------------------------------------------

class RolloutPlanOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    flag = serializers.CharField(source="flag.key")
    environment = serializers.CharField(source="environment.key")
    percentages = serializers.ListField(child=serializers.IntegerField())
    days = serializers.CharField()
    at = serializers.TimeField(format="%H:%M")
    timezone = serializers.CharField()
    status = serializers.CharField()
    result = serializers.CharField()
    author = serializers.CharField(source="author_label")
    steps = serializers.SerializerMethodField()
    createdAt = serializers.DateTimeField(source="created_at")

    def get_steps(self, plan) -> list[dict]:
        steps = sorted(plan.steps.all(), key=lambda s: s.step)
        return ScheduledChangeOutputSerializer(steps, many=True).data


class RolloutPlanInputSerializer(StrictSerializer):
    flag = Text(max_length=128)
    environment = Text(max_length=64, required=False)
    percentages = serializers.ListField(child=serializers.JSONField(), help_text="e.g. [10, 25, 50, 100]")
    at = Text(max_length=16, help_text="Local time of day in `timezone`, e.g. 09:00")
    timezone = Text(max_length=64, default="UTC")
    days = serializers.ChoiceField(choices=["weekdays", "daily"], default="weekdays")
    start = Text(max_length=16, required=False, help_text="First date to consider (default: today in `timezone`)")


class RolloutPlanListCreateApi(APIView):
    required_perms = {"GET": ["changes.view_rolloutplan"], "POST": PLAN_PERMS}
    pagination_class = Pagination

    @extend_schema(responses=RolloutPlanOutputSerializer(many=True))
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.rollout_plan_list(), request, view=self)
        return paginator.get_paginated_response(RolloutPlanOutputSerializer(page, many=True).data)

    @extend_schema(request=RolloutPlanInputSerializer, responses={201: RolloutPlanOutputSerializer})
    def post(self, request):
        data = validate(RolloutPlanInputSerializer, request.data)
        environment = _environment(request, data.pop("environment", None))
        plan = services.rollout_plan_create(actor=actor_for(request), environment=environment, **data)
        return Response(RolloutPlanOutputSerializer(selectors.rollout_plan_get(plan.pk)).data, status=201,
                        headers={"Location": f"{_prefix()}/rollout-plans/{plan.pk}"})


class RolloutPlanDetailApi(APIView):
    required_perms = {"GET": ["changes.view_rolloutplan"]}

    @extend_schema(responses=RolloutPlanOutputSerializer)
    def get(self, request, plan_id):
        return Response(RolloutPlanOutputSerializer(selectors.rollout_plan_get(plan_id)).data)


class RolloutPlanCancelApi(APIView):
    required_perms = {"POST": ["changes.change_rolloutplan"]}

    @extend_schema(request=CancelInputSerializer, responses=RolloutPlanOutputSerializer)
    def post(self, request, plan_id):
        data = validate(CancelInputSerializer, request.data)
        plan = services.rollout_plan_cancel(actor=actor_for(request), plan=selectors.rollout_plan_get(plan_id),
                                            reason=data["reason"])
        return Response(RolloutPlanOutputSerializer(selectors.rollout_plan_get(plan.pk)).data)
