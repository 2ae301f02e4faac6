"""The embedded default's scheduler: with no broker (no REDIS_URL) there is no Celery beat, so each
web process runs a daemon thread that applies due scheduled changes every
FLAGS_SCHEDULED_CHANGES_INTERVAL seconds, the same service the beat task calls. Two web workers
(scripts/run) both run it: the applier's claim makes each change apply once anyway.

Started from the ASGI lifespan start-up (flagsite/asgi.py), in the worker process itself, so a
forking server never leaves the thread behind in its parent. Analytics has no such beat work in
the embedded mode (rollup compaction and stale marking are daily Celery beat tasks only)."""

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger("flagsite.changes.runner")
_thread = None
_stop = threading.Event()


def wanted():
    return settings.FLAGS_SCHEDULED_CHANGES_RUNNER and settings.CELERY_TASK_ALWAYS_EAGER


def start():
    """Start the thread (once per process) when this process has no beat to rely on."""
    global _thread
    if _thread is not None or not wanted():
        return False
    _stop.clear()
    _thread = threading.Thread(target=_loop, name="flagsite-scheduled-changes", daemon=True)
    _thread.start()
    return True


def stop():
    global _thread
    _stop.set()
    if _thread is not None:
        _thread.join(timeout=10)
    _thread = None


def _loop():
    from changes import services

    while not _stop.wait(services.interval_seconds()):
        try:
            decided = services.apply_due()
            if decided:
                logger.info("scheduled changes decided: %s", decided)
        except Exception:  # a database that is down now may be back at the next run
            logger.exception("applying scheduled changes failed; retrying in %ss", services.interval_seconds())
        finally:
            close_old_connections()
