"""The embedded default's webhook sender (no broker, so no worker or beat): a daemon thread per web
process that dispatches and sends due deliveries every FLAGS_WEBHOOK_TICK_SECONDS, and at once when
an audited commit wakes it. Several processes may run it: claims make each attempt happen once.
Started from the ASGI lifespan start-up (flagsite/asgi.py), in the worker process itself."""

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger("flagsite.webhooks")
_thread = None
_stop = threading.Event()
_wake = threading.Event()


def start():
    global _thread
    if _thread is not None or not (settings.CELERY_TASK_ALWAYS_EAGER and settings.FLAGS_WEBHOOK_RUNNER):
        return False
    _stop.clear()
    _thread = threading.Thread(target=_loop, name="flagsite-webhooks", daemon=True)
    _thread.start()
    return True


def stop():
    global _thread
    _stop.set()
    _wake.set()
    if _thread is not None:
        _thread.join(timeout=10)
    _thread = None


def wake():
    """Ask the thread to run now; False when this process has none (the caller sends inline)."""
    if _thread is None:
        return False
    _wake.set()
    return True


def run_once():
    from webhooks import services

    services.webhooks_dispatch()
    for delivery_id in services.deliveries_due():
        services.delivery_send(delivery_id=delivery_id)


def _loop():
    while not _stop.is_set():
        _wake.wait(settings.FLAGS_WEBHOOK_TICK_SECONDS)
        _wake.clear()
        if _stop.is_set():
            break
        try:
            run_once()
        except Exception:  # a database that is down now may be back at the next tick
            logger.exception("webhook runner tick failed")
        finally:
            close_old_connections()
