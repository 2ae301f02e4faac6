"""Reads for the API and admin: subscriptions of the current project."""

from flags.errors import NotFound
from webhooks.models import Delivery, Webhook


def webhook_list():
    return Webhook.objects.all()


def webhook_get(*, pk):
    webhook = Webhook.objects.filter(pk=pk).first()
    if webhook is None:
        raise NotFound(f"Webhook {pk} not found.")
    return webhook


def delivery_list(*, webhook):
    return Delivery.objects.filter(webhook=webhook).prefetch_related("attempt_log")


def delivery_get(*, webhook, pk):
    delivery = Delivery.objects.filter(webhook=webhook, pk=pk).first()
    if delivery is None:
        raise NotFound(f"Delivery {pk} not found.")
    return delivery
