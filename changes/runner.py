"""The embedded default's scheduler: with no broker (no REDIS_URL) there is no Celery beat, so each
web process applies due scheduled changes every FLAGS_SCHEDULED_CHANGES_INTERVAL seconds on a
thread (flagsite/ops/background.py), the same service the beat task calls. Two web workers both run
it: the applier's claim makes each change apply once anyway."""

import logging

from django.conf import settings

from flagsite.ops.background import PeriodicThread

logger = logging.getLogger("flagsite.changes.runner")


def _apply_due():
    from changes import services

    decided = services.apply_due()
    if decided:
        logger.info("scheduled changes decided: %s", decided)


def _interval():
    from changes import services

    return services.interval_seconds()


_runner = PeriodicThread("scheduled-changes", _apply_due, interval=_interval,
                         enabled=lambda: settings.FLAGS_SCHEDULED_CHANGES_RUNNER and settings.CELERY_TASK_ALWAYS_EAGER)
start, stop = _runner.start, _runner.stop
