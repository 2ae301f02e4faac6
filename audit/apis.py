"""Read-only REST views over the audit log (newest first)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from audit.models import AuditEntry
from flagsite.api.pagination import Pagination
from projects import scope


class AuditEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    createdAt = serializers.DateTimeField(source="created_at")
    actor = serializers.CharField()
    action = serializers.CharField()
    targetType = serializers.CharField(source="target_type")
    targetKey = serializers.CharField(source="target_key")
    environment = serializers.CharField()
    before = serializers.JSONField()
    after = serializers.JSONField()
    reason = serializers.CharField()
    requestId = serializers.CharField(source="request_id")
    ip = serializers.IPAddressField(allow_null=True)
    prevHash = serializers.CharField(source="prev_hash")
    hash = serializers.CharField()


PAGE_PARAMS = [OpenApiParameter("limit", int), OpenApiParameter("offset", int)]


class _AuditListApi(APIView):
    required_perms = {"GET": ["audit.view_auditentry"]}
    pagination_class = Pagination  # read by the OpenAPI schema: list answers are paginated

    def respond(self, request, entries):
        paginator = Pagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(AuditEntryOutputSerializer(page, many=True).data)


class AuditListApi(_AuditListApi):
    @extend_schema(
        parameters=[*PAGE_PARAMS, OpenApiParameter("environment", str), OpenApiParameter("action", str)],
        responses=AuditEntryOutputSerializer(many=True),
    )
    def get(self, request):
        entries = AuditEntry.objects.filter(project=scope.current())
        for param, field in (("environment", "environment"), ("action", "action")):
            if request.query_params.get(param):
                entries = entries.filter(**{field: request.query_params[param]})
        return self.respond(request, entries)


class AuditFlagApi(_AuditListApi):
    @extend_schema(parameters=PAGE_PARAMS, responses=AuditEntryOutputSerializer(many=True))
    def get(self, request, key):
        return self.respond(request, AuditEntry.objects.filter(project=scope.current(), target_type="flag",
                                                                   target_key=key))
