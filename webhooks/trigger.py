"""How deliveries get going, in both modes.

With a broker (REDIS_URL): after each audited commit the dispatcher runs as a Celery task; each new
delivery is its own task, a retry a task with a countdown; Celery beat runs ``webhooks.tick`` every
FLAGS_WEBHOOK_TICK_SECONDS as the safety net (a lost wake-up or task, a broker that was down).

Embedded (no broker, eager Celery): each web process runs a daemon thread (webhooks/runner.py)
that dispatches and sends due deliveries every FLAGS_WEBHOOK_TICK_SECONDS and at once when woken
after an audited commit, so a slow receiver never holds a request. A process without that thread
(a management command, the tests) dispatches and sends inline after its commit.
"""

import logging

from django.conf import settings

logger = logging.getLogger("flagsite.webhooks")


def eager():
    return settings.CELERY_TASK_ALWAYS_EAGER


def audit_committed():
    """audit.services follower: entries were committed."""
    from webhooks import runner, services, tasks

    if not eager():
        try:  # retry=False: a broker that is down must not hold the request; the beat tick catches up
            tasks.dispatch.apply_async(retry=False)
        except Exception as exc:  # noqa: BLE001 - any broker error: the tick catches up
            logger.warning("webhook dispatch not enqueued (the next tick catches up): %s", exc)
        return
    if runner.wake():
        return
    if not services.has_active():  # embedded processes without webhooks pay one cheap query
        return
    for delivery_id in services.webhooks_dispatch():
        services.delivery_send(delivery_id=delivery_id)


def send_now(delivery_ids):
    """Deliveries just enqueued."""
    from webhooks import runner, services, tasks

    if not eager():
        for delivery_id in delivery_ids:
            try:
                tasks.deliver.apply_async((delivery_id,), retry=False)
            except Exception as exc:  # noqa: BLE001 - any broker error: the tick catches up
                logger.warning("delivery %s not enqueued (the next tick sends it): %s", delivery_id, exc)
        return
    if runner.wake():
        return
    for delivery_id in delivery_ids:
        services.delivery_send(delivery_id=delivery_id)


def send_later(delivery_id, delay):
    """A retry due in ``delay`` seconds. Embedded: the runner's next tick after it is due sends it
    (no runner: the next dispatch or an explicit tick)."""
    from webhooks import runner, tasks

    if not eager():
        try:
            tasks.deliver.apply_async((delivery_id,), countdown=delay, retry=False)
        except Exception as exc:  # noqa: BLE001 - any broker error: the tick catches up
            logger.warning("retry of delivery %s not enqueued (the next tick sends it): %s", delivery_id, exc)
    elif delay <= 0:
        send_now([delivery_id])
    else:
        runner.wake()
