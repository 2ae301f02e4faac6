"""REST views for change requests and protected environments (/api/change-requests,
/api/environments/<environment>/protection, and the same under /api/projects/<project>/). Thin:
validate -> changes/approvals.py -> serialize. A direct write refused in a protected environment
answers 409 {"error": {"code": "approval_required", "changeRequests": "<this route>"}}."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from changes import approvals, selectors
from changes.apis import ChangeSerializer, ScheduledChangeOutputSerializer, _environment, _prefix
from changes.models import ChangeRequest, Review
from flags.errors import NotFound
from flags.serializers import StrictSerializer, Text
from flagsite.api.common import actor_for, validate
from flagsite.api.pagination import Pagination

VIEW = ["changes.view_changerequest"]


class ReviewOutputSerializer(serializers.Serializer):
    reviewer = serializers.CharField(source="reviewer_label")
    verdict = serializers.ChoiceField(choices=Review.Verdict.choices)
    comment = serializers.CharField()
    revision = serializers.IntegerField()
    createdAt = serializers.DateTimeField(source="created_at")


class ChangeRequestOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    flag = serializers.CharField(source="flag.key")
    environment = serializers.CharField(source="environment.key")
    title = serializers.CharField()
    description = serializers.CharField()
    action = serializers.CharField(source="operation")
    change = serializers.JSONField(source="payload")
    diff = serializers.JSONField(help_text="{field: {before, after}} against the state at baseVersion")
    baseVersion = serializers.IntegerField(source="base_version")
    status = serializers.ChoiceField(choices=ChangeRequest.State.choices)
    revision = serializers.IntegerField(help_text="+1 on each amend or rebase; approvals count for the current one")
    author = serializers.CharField(source="author_label")
    approvals = serializers.SerializerMethodField()
    requiredApprovals = serializers.SerializerMethodField()
    reviews = ReviewOutputSerializer(many=True, source="reviews.all")
    appliedBy = serializers.CharField(source="applied_by")
    appliedAt = serializers.DateTimeField(source="applied_at", allow_null=True)
    result = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    def get_approvals(self, cr) -> list[str]:
        return approvals.approvers(cr)

    def get_requiredApprovals(self, cr) -> int:
        return approvals.required_approvals(cr)


class ChangeRequestInputSerializer(StrictSerializer):
    flag = Text(max_length=128)
    environment = Text(max_length=64, required=False, help_text="Default: ?environment=, else the default one")
    title = Text(max_length=200)
    description = Text(max_length=10_000, required=False, allow_blank=True, default="")
    change = ChangeSerializer(help_text="As a scheduled change's (the kill switch is never held: use it directly)")


class AmendInputSerializer(StrictSerializer):
    title = Text(max_length=200, required=False)
    description = Text(max_length=10_000, required=False, allow_blank=True)
    change = ChangeSerializer(required=False)


class WithdrawInputSerializer(StrictSerializer):
    reason = Text(max_length=2000, allow_blank=True, default="")


class ReviewInputSerializer(StrictSerializer):
    verdict = serializers.ChoiceField(choices=Review.Verdict.choices)
    comment = Text(max_length=10_000, allow_blank=True, default="")


class EmptySerializer(StrictSerializer):
    pass


def _out(cr, status=200, **kwargs):
    return Response(ChangeRequestOutputSerializer(selectors.change_request_get(cr.pk)).data, status=status, **kwargs)


class ChangeRequestListCreateApi(APIView):
    required_perms = {"GET": VIEW, "POST": ["changes.add_changerequest"]}
    pagination_class = Pagination

    @extend_schema(parameters=[OpenApiParameter("flag", str), OpenApiParameter("environment", str),
                               OpenApiParameter("status", str, enum=[*ChangeRequest.State.values, "pending"]),
                               OpenApiParameter("author", str)],
                   responses=ChangeRequestOutputSerializer(many=True))
    def get(self, request):
        params = request.query_params
        crs = selectors.change_request_list(flag=params.get("flag"), environment=params.get("environment"),
                                            status=params.get("status"), author=params.get("author"))
        paginator = Pagination()
        page = paginator.paginate_queryset(crs, request, view=self)
        return paginator.get_paginated_response(ChangeRequestOutputSerializer(page, many=True).data)

    @extend_schema(request=ChangeRequestInputSerializer, responses={201: ChangeRequestOutputSerializer})
    def post(self, request):
        data = validate(ChangeRequestInputSerializer, request.data)
        cr = approvals.change_request_open(
            actor=actor_for(request), flag=data["flag"], environment=_environment(request, data.get("environment")),
            title=data["title"], description=data["description"], operation=data["change"]["action"],
            payload=data["change"]["payload"])
        return _out(cr, 201, headers={"Location": f"{_prefix()}/change-requests/{cr.pk}"})


class ChangeRequestDetailApi(APIView):
    required_perms = {"GET": VIEW}

    @extend_schema(responses=ChangeRequestOutputSerializer)
    def get(self, request, change_request_id):
        return _out(selectors.change_request_get(change_request_id))


class ChangeRequestAmendApi(APIView):
    required_perms = {"POST": ["changes.change_changerequest"]}

    @extend_schema(request=AmendInputSerializer, responses=ChangeRequestOutputSerializer)
    def post(self, request, change_request_id):
        data = validate(AmendInputSerializer, request.data)
        change = data.get("change") or {}
        cr = approvals.change_request_amend(
            actor=actor_for(request), change_request=selectors.change_request_get(change_request_id),
            title=data.get("title"), description=data.get("description"), operation=change.get("action"),
            payload=change.get("payload"))
        return _out(cr)


class ChangeRequestRebaseApi(APIView):
    required_perms = {"POST": ["changes.change_changerequest"]}

    @extend_schema(request=None, responses=ChangeRequestOutputSerializer)
    def post(self, request, change_request_id):
        validate(EmptySerializer, request.data or {})
        cr = approvals.change_request_rebase(actor=actor_for(request),
                                             change_request=selectors.change_request_get(change_request_id))
        return _out(cr)


class ChangeRequestWithdrawApi(APIView):
    required_perms = {"POST": ["changes.change_changerequest"]}

    @extend_schema(request=WithdrawInputSerializer, responses=ChangeRequestOutputSerializer)
    def post(self, request, change_request_id):
        data = validate(WithdrawInputSerializer, request.data or {})
        cr = approvals.change_request_withdraw(actor=actor_for(request), reason=data["reason"],
                                               change_request=selectors.change_request_get(change_request_id))
        return _out(cr)


class ChangeRequestReviewApi(APIView):
    required_perms = {"POST": ["changes.review_changerequest"]}

    @extend_schema(request=ReviewInputSerializer, responses=ChangeRequestOutputSerializer)
    def post(self, request, change_request_id):
        data = validate(ReviewInputSerializer, request.data)
        cr = approvals.change_request_review(actor=actor_for(request), verdict=data["verdict"],
                                             comment=data["comment"],
                                             change_request=selectors.change_request_get(change_request_id))
        return _out(cr)


class ChangeRequestApplyApi(APIView):
    required_perms = {"POST": ["changes.apply_changerequest"]}

    @extend_schema(request=None, responses=ChangeRequestOutputSerializer)
    def post(self, request, change_request_id):
        validate(EmptySerializer, request.data or {})
        cr = approvals.change_request_apply(actor=actor_for(request),
                                            change_request=selectors.change_request_get(change_request_id))
        return _out(cr)


class ScheduleInputSerializer(StrictSerializer):
    runAt = Text(max_length=64, help_text="ISO 8601; without an offset it is read in `timezone`; in the future")
    timezone = Text(max_length=64, default="UTC")


class ChangeRequestScheduleApi(APIView):
    """Apply an approved request later: 201 with the scheduled change (see /api/scheduled-changes)."""

    required_perms = {"POST": ["changes.apply_changerequest", "changes.add_scheduledchange"]}

    @extend_schema(request=ScheduleInputSerializer, responses={201: ScheduledChangeOutputSerializer})
    def post(self, request, change_request_id):
        data = validate(ScheduleInputSerializer, request.data)
        change = approvals.change_request_schedule(
            actor=actor_for(request), change_request=selectors.change_request_get(change_request_id),
            run_at=data["runAt"], timezone=data["timezone"])
        return Response(ScheduledChangeOutputSerializer(change).data, status=201,
                        headers={"Location": f"{_prefix()}/scheduled-changes/{change.pk}"})


# -- protected environments -----------------------------------------------------------------------

class ProtectionOutputSerializer(serializers.Serializer):
    environment = serializers.CharField()
    protected = serializers.BooleanField()
    requiredApprovals = serializers.IntegerField(allow_null=True)


class ProtectionInputSerializer(StrictSerializer):
    requiredApprovals = serializers.IntegerField(min_value=1, max_value=10, default=1)


def _protection(environment):
    protection = approvals.protection_get(environment)
    return {"environment": environment, "protected": protection is not None,
            "requiredApprovals": protection.required_approvals if protection else None}


class EnvironmentProtectionApi(APIView):
    required_perms = {"GET": ["changes.view_protectedenvironment"], "PUT": ["changes.add_protectedenvironment", "changes.change_protectedenvironment"],
                      "DELETE": ["changes.delete_protectedenvironment"]}

    def _env(self, environment):
        from flags.models import Environment

        if not Environment.objects.filter(key=environment).exists():
            raise NotFound(f"Environment '{environment}' not found.")
        return environment

    @extend_schema(responses=ProtectionOutputSerializer)
    def get(self, request, environment):
        return Response(_protection(self._env(environment)))

    @extend_schema(request=ProtectionInputSerializer, responses=ProtectionOutputSerializer)
    def put(self, request, environment):
        data = validate(ProtectionInputSerializer, request.data)
        approvals.protection_set(actor=actor_for(request), environment=self._env(environment),
                                 required_approvals=data["requiredApprovals"])
        return Response(_protection(environment))

    @extend_schema(request=None, responses=ProtectionOutputSerializer)
    def delete(self, request, environment):
        approvals.protection_remove(actor=actor_for(request), environment=self._env(environment))
        return Response(_protection(environment))
