"""REST views for segments (global: a change affects every environment)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from flags.serializers import KEY_REGEX, MAX_DESCRIPTION, StrictSerializer, Text
from flagsite.api.common import actor_for, key_from, validate
from flagsite.api.pagination import Pagination
from segments import selectors, services


class SegmentOutputSerializer(serializers.Serializer):
    id = serializers.CharField(source="key")
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    conditions = serializers.JSONField()
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class SegmentInputSerializer(StrictSerializer):
    """``conditions``: shorthand {"plan": "premium"} (custom equals) or a list of rules."""

    ignored_fields = frozenset({"id", "createdAt", "updatedAt"})
    key = serializers.RegexField(KEY_REGEX, required=False)
    name = Text(max_length=200)
    description = Text(allow_blank=True, default="", max_length=MAX_DESCRIPTION)
    conditions = serializers.JSONField()

    def validate_conditions(self, value):
        if not isinstance(value, (dict, list)):
            raise serializers.ValidationError("Expected a list of rules or an object of field: value.")
        return value


class SegmentListCreateApi(APIView):
    required_perms = {"GET": ["segments.view_segment"], "POST": ["segments.add_segment"]}
    pagination_class = Pagination  # read by the OpenAPI schema: list answers are paginated

    @extend_schema(responses=SegmentOutputSerializer(many=True))
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.segment_list(), request, view=self)
        return paginator.get_paginated_response(SegmentOutputSerializer(page, many=True).data)

    @extend_schema(request=SegmentInputSerializer, responses={201: SegmentOutputSerializer})
    def post(self, request):
        data = validate(SegmentInputSerializer, request.data)
        key = key_from(data)
        segment = services.segment_create(actor=actor_for(request), key=key, **data)
        return Response(SegmentOutputSerializer(segment).data, status=201)


class SegmentDetailApi(APIView):
    required_perms = {
        "GET": ["segments.view_segment"],
        "PUT": ["segments.change_segment"],
        "PATCH": ["segments.change_segment"],
        "DELETE": ["segments.delete_segment"],
    }

    @extend_schema(responses=SegmentOutputSerializer)
    def get(self, request, key):
        return Response(SegmentOutputSerializer(selectors.segment_get(key=key)).data)

    @extend_schema(request=SegmentInputSerializer, responses=SegmentOutputSerializer)
    def put(self, request, key):
        return self._update(request, key, partial=False)

    @extend_schema(request=SegmentInputSerializer(partial=True), responses=SegmentOutputSerializer)
    def patch(self, request, key):
        return self._update(request, key, partial=True)

    def _update(self, request, key, partial):
        data = validate(SegmentInputSerializer, request.data, partial=partial)
        segment = selectors.segment_get(key=key)
        segment = services.segment_update(actor=actor_for(request), segment=segment, data=data)
        return Response(SegmentOutputSerializer(segment).data)

    @extend_schema(responses={204: None})
    def delete(self, request, key):
        services.segment_delete(actor=actor_for(request), segment=selectors.segment_get(key=key))
        return Response(status=204)
