from django.urls import path

from webhooks import apis

urlpatterns = [
    path("webhooks", apis.WebhookListCreateApi.as_view(), name="webhook-list"),
    path("webhooks/<int:webhook_id>", apis.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<int:webhook_id>/rotate-secret", apis.WebhookRotateSecretApi.as_view(), name="webhook-rotate-secret"),
    path("webhooks/<int:webhook_id>/ping", apis.WebhookPingApi.as_view(), name="webhook-ping"),
    path("webhooks/<int:webhook_id>/deliveries", apis.DeliveryListApi.as_view(), name="webhook-deliveries"),
    path("webhooks/<int:webhook_id>/deliveries/<int:delivery>/redeliver", apis.DeliveryRedeliverApi.as_view(),
         name="webhook-redeliver"),
]
