"""Celery tasks: one more interface onto webhooks/services.py (webhooks/trigger.py says when)."""

from celery import shared_task

from webhooks import services, trigger


@shared_task(name="webhooks.dispatch", ignore_result=True)
def dispatch():
    """After an audited commit: enqueue deliveries for new audit entries, then send them."""
    ids = services.webhooks_dispatch()
    trigger.send_now(ids)
    return len(ids)


@shared_task(name="webhooks.deliver", ignore_result=True)
def deliver(delivery_id):
    """One attempt of one delivery (a no-op unless it is due and unclaimed)."""
    delivery = services.delivery_send(delivery_id=delivery_id)
    return delivery.status if delivery is not None else None


@shared_task(name="webhooks.tick", ignore_result=True)
def tick():
    """Beat, every FLAGS_WEBHOOK_TICK_SECONDS: the safety net. Dispatch, and hand every due
    delivery (first tries and retries alike) to a deliver task."""
    ids = services.webhooks_dispatch()
    due = services.deliveries_due()
    trigger.send_now(sorted(set(ids) | set(due)))
    return len(due)
