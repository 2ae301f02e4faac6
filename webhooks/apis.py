"""REST views for webhooks: /api/webhooks (the default project) and /api/projects/<p>/webhooks."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from flags.serializers import Bool, StrictSerializer, Text
from flagsite.api.common import actor_for, validate
from flagsite.api.pagination import Pagination
from webhooks import events, selectors, services
from webhooks.models import Webhook

VIEW, CHANGE = "webhooks.view_webhook", "webhooks.change_webhook"


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    format = serializers.ChoiceField(choices=Webhook.Format.choices)
    active = serializers.BooleanField()
    consecutiveFailures = serializers.IntegerField(source="consecutive_failures")
    disabledAt = serializers.DateTimeField(source="disabled_at", allow_null=True,
                                           help_text="Set when repeated failures turned the webhook off")
    disabledReason = serializers.CharField(source="disabled_reason")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")


class WebhookCreatedSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(help_text="The signing secret (whsec_...): shown this once, stored encrypted")


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new signing secret: shown this once")


class WebhookInputSerializer(StrictSerializer):
    ignored_fields = frozenset({"id", "consecutiveFailures", "disabledAt", "disabledReason", "createdAt",
                                "updatedAt", "secret"})
    url = Text(max_length=2000)
    events = serializers.ListField(child=serializers.ChoiceField(choices=list(events.EVENTS)), allow_empty=False,
                                   help_text="Any of: " + ", ".join(f"`{e}` ({d})" for e, d in events.EVENTS.items()))
    format = serializers.ChoiceField(choices=Webhook.Format.choices, required=False)
    name = Text(max_length=200, allow_blank=True, required=False)
    active = Bool(required=False)


class AttemptSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    startedAt = serializers.DateTimeField(source="started_at")
    latencyMs = serializers.IntegerField(source="latency_ms")
    responseStatus = serializers.IntegerField(source="response_status", allow_null=True)
    responseExcerpt = serializers.CharField(source="response_excerpt")
    error = serializers.CharField()
    succeeded = serializers.BooleanField()
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", allow_null=True)


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.CharField()
    auditEntryId = serializers.IntegerField(source="audit_entry_id", allow_null=True)
    messageId = serializers.CharField(source="message_id", help_text="The webhook-id header: stable across retries")
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", allow_null=True)
    lastAttemptAt = serializers.DateTimeField(source="last_attempt_at", allow_null=True)
    latencyMs = serializers.IntegerField(source="latency_ms", allow_null=True)
    responseStatus = serializers.IntegerField(source="response_status", allow_null=True)
    responseExcerpt = serializers.CharField(source="response_excerpt")
    error = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    attemptLog = AttemptSerializer(source="attempt_log.all", many=True)


class WebhookListCreateApi(APIView):
    """The project's webhook subscriptions; a new one answers its signing secret once."""

    required_perms = {"GET": [VIEW], "POST": ["webhooks.add_webhook"]}

    @extend_schema(responses=WebhookOutputSerializer(many=True))
    def get(self, request):
        return Response(WebhookOutputSerializer(selectors.webhook_list(), many=True).data)

    @extend_schema(request=WebhookInputSerializer, responses={201: WebhookCreatedSerializer})
    def post(self, request):
        data = validate(WebhookInputSerializer, request.data)
        webhook, secret = services.webhook_create(actor=actor_for(request), **data)
        return Response({**WebhookOutputSerializer(webhook).data, "secret": secret}, status=201)


class WebhookDetailApi(APIView):
    required_perms = {"GET": [VIEW], "PATCH": [CHANGE], "DELETE": ["webhooks.delete_webhook"]}

    @extend_schema(responses=WebhookOutputSerializer)
    def get(self, request, webhook_id):
        return Response(WebhookOutputSerializer(selectors.webhook_get(pk=webhook_id)).data)

    @extend_schema(request=WebhookInputSerializer(partial=True), responses=WebhookOutputSerializer,
                   description="Setting `active` back to true clears the failure count; it resumes from now.")
    def patch(self, request, webhook_id):
        data = validate(WebhookInputSerializer, request.data, partial=True)
        webhook = services.webhook_update(actor=actor_for(request), webhook=selectors.webhook_get(pk=webhook_id), data=data)
        return Response(WebhookOutputSerializer(webhook).data)

    @extend_schema(responses={204: None})
    def delete(self, request, webhook_id):
        services.webhook_delete(actor=actor_for(request), webhook=selectors.webhook_get(pk=webhook_id))
        return Response(status=204)


class WebhookRotateSecretApi(APIView):
    """A new signing secret, answered once; the old one stops signing at once."""

    required_perms = {"POST": [CHANGE]}

    @extend_schema(request=None, responses=SecretSerializer)
    def post(self, request, webhook_id):
        secret = services.webhook_rotate_secret(actor=actor_for(request), webhook=selectors.webhook_get(pk=webhook_id))
        return Response({"secret": secret})


class WebhookPingApi(APIView):
    """Send a `webhook.ping` message now (one attempt, no retries) and answer its delivery."""

    required_perms = {"POST": [CHANGE]}

    @extend_schema(request=None, responses=DeliveryOutputSerializer)
    def post(self, request, webhook_id):
        delivery = services.webhook_ping(actor=actor_for(request), webhook=selectors.webhook_get(pk=webhook_id))
        return Response(DeliveryOutputSerializer(delivery).data)


class DeliveryListApi(APIView):
    """The delivery log of a webhook, newest first, each with its attempts."""

    required_perms = {"GET": [VIEW]}
    pagination_class = Pagination

    @extend_schema(parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
                   responses=DeliveryOutputSerializer(many=True))
    def get(self, request, webhook_id):
        paginator = Pagination()
        page = paginator.paginate_queryset(selectors.delivery_list(webhook=selectors.webhook_get(pk=webhook_id)), request,
                                           view=self)
        return paginator.get_paginated_response(DeliveryOutputSerializer(page, many=True).data)


class DeliveryRedeliverApi(APIView):
    """Send a delivery again (same webhook-id and body, so receivers can tell it is the same message)."""

    required_perms = {"POST": [CHANGE]}

    @extend_schema(request=None, responses={202: DeliveryOutputSerializer})
    def post(self, request, webhook_id, delivery):
        found = selectors.delivery_get(webhook=selectors.webhook_get(pk=webhook_id), pk=delivery)
        found = services.delivery_redeliver(actor=actor_for(request), delivery=found)
        return Response(DeliveryOutputSerializer(found).data, status=202)
