"""The embedded default's webhook sender (no broker, so no worker or beat): each web process
dispatches and sends due deliveries every FLAGS_WEBHOOK_TICK_SECONDS on a thread
(flagsite/ops/background.py), and at once when an audited commit wakes it. Several processes may
run it: claims make each attempt happen once."""

from django.conf import settings

from flagsite.ops.background import PeriodicThread


def run_once():
    from webhooks import services

    services.webhooks_dispatch()
    for delivery_id in services.deliveries_due():
        services.delivery_send(delivery_id=delivery_id)


_runner = PeriodicThread("webhooks", run_once, interval=lambda: settings.FLAGS_WEBHOOK_TICK_SECONDS,
                         enabled=lambda: settings.CELERY_TASK_ALWAYS_EAGER and settings.FLAGS_WEBHOOK_RUNNER)
start, stop, wake = _runner.start, _runner.stop, _runner.wake
