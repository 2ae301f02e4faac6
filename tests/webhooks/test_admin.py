"""Admin: the secret shown once on create, the delivery log with its attempts, redeliver."""

import pytest
from django.urls import reverse

from tests.webhooks.conftest import SYSTEM
from webhooks import crypto, services
from webhooks.models import Delivery, Webhook

pytestmark = pytest.mark.django_db


def test_add__secret_shown_once__stored_encrypted(admin_client, receiver):
    response = admin_client.post(reverse("admin:webhooks_webhook_add"), {
        "name": "ops", "url": receiver.url, "events": ["flag.killed", "segment.changed"], "format": "slack",
        "active": "on"}, follow=True)
    assert response.status_code == 200
    webhook = Webhook.objects.get()
    [message] = [str(m) for m in response.context["messages"] if "shown once" in str(m)]
    secret = crypto.decrypt(webhook.secret_encrypted)
    assert secret in message
    assert secret not in admin_client.get(reverse("admin:webhooks_webhook_change", args=[webhook.pk])).content.decode()
    assert (webhook.events, webhook.format) == (["flag.killed", "segment.changed"], "slack")


def test_add__bad_url__form_error_nothing_written(admin_client):
    response = admin_client.post(reverse("admin:webhooks_webhook_add"), {
        "url": "ftp://example.test/h", "events": ["flag.killed"], "format": "standard"})
    assert response.status_code == 200 and not Webhook.objects.exists()
    assert "url" in response.context["adminform"].form.errors


def test_delivery_log__attempts_and_disabled_reason_shown__redeliver(settings, admin_client, receiver):
    settings.FLAGS_WEBHOOK_DISABLE_AFTER = 1
    receiver.script = [500]
    webhook, _ = services.webhook_create(actor=SYSTEM, url=receiver.url, events=["flag.killed"])
    delivery = services.webhook_ping(actor=SYSTEM, webhook=webhook)
    Delivery.objects.filter(pk=delivery.pk).update(event="flag.killed")  # a ping does not count; make it one
    services.delivery_redeliver(actor=SYSTEM, delivery=delivery)
    services.delivery_send(delivery_id=delivery.pk)
    listing = admin_client.get(reverse("admin:webhooks_webhook_changelist")).content.decode()
    assert "1 failed attempts in a row; last: HTTP 500" in listing
    page = admin_client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk])).content.decode()
    assert page.count("HTTP 500") >= 2 and "&quot;ok&quot;: false" in page  # both attempts, with the excerpt
    response = admin_client.post(reverse("admin:webhooks_delivery_changelist"),
                                 {"action": "redeliver", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    assert Delivery.objects.get(pk=delivery.pk).status == "pending"
