from django.urls import path

from webhooks import apis

urlpatterns = [
    path("webhooks", apis.WebhookListCreateApi.as_view(), name="webhook-list"),
    path("webhooks/<int:pk>", apis.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("webhooks/<int:pk>/rotate-secret", apis.WebhookRotateSecretApi.as_view(), name="webhook-rotate-secret"),
    path("webhooks/<int:pk>/ping", apis.WebhookPingApi.as_view(), name="webhook-ping"),
    path("webhooks/<int:pk>/deliveries", apis.DeliveryListApi.as_view(), name="webhook-deliveries"),
    path("webhooks/<int:pk>/deliveries/<int:delivery>/redeliver", apis.DeliveryRedeliverApi.as_view(),
         name="webhook-redeliver"),
]
