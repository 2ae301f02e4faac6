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

from flags import publish

logger = logging.getLogger("flagsite.webhooks")
# A broker that hangs (rather than refuses) must not hold a committed write's response (see
# flags/publish.py): with Celery, tasks are enqueued from this process's own outbox thread.
_outbox = publish.Outbox()
NOTICES_FIRST_SECONDS = 1.0


def _enqueue(task, *args, **options):
    def job():
        # live clients hear of a change before any webhook work starts: a fresh process's first
        # enqueue imports and connects Celery's transport, which held the GIL from its notice
        publish.notices_sent(NOTICES_FIRST_SECONDS)
        try:  # retry=False: a broker that is down costs one failed publish; the beat tick catches up
            task.apply_async(args, retry=False, **options)
        except Exception as exc:  # noqa: BLE001 - any broker error: the tick catches up
            logger.warning("%s%s not enqueued (the next tick catches up): %s", task.name, args, exc)

    _outbox.put(job)


def eager():
    return settings.CELERY_TASK_ALWAYS_EAGER


def audit_committed():
    """audit.services follower: entries were committed."""
    from webhooks import runner, services, tasks

    if not eager():
        _enqueue(tasks.dispatch)
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
            _enqueue(tasks.deliver, delivery_id)
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
        _enqueue(tasks.deliver, delivery_id, countdown=delay)
    elif delay <= 0:
        send_now([delivery_id])
    else:
        runner.wake()
