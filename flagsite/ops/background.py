"""Periodic work in a web process of the embedded default: with no broker there is no Celery beat,
so each web process runs a daemon thread per job (scheduled changes, webhook sends). Several
processes may run the same job at once; each job's own claims make its work happen once.

Started from the ASGI lifespan start-up (flagsite/asgi.py), in the worker process itself, so a
forking server never leaves a thread behind in its parent."""

import logging
import threading

from django.db import close_old_connections


class PeriodicThread:
    """Runs ``job()`` every ``interval()`` seconds, or at once when woken, on one daemon thread."""

    def __init__(self, name, job, *, interval, enabled):
        self.name, self.job, self.interval, self.enabled = name, job, interval, enabled
        self.logger = logging.getLogger(f"flagsite.{name}")
        self._thread = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    def start(self):
        """Start the thread (once per process) when this process has no beat to rely on."""
        from django.conf import settings

        if self._thread is not None or not self.enabled() or getattr(settings, "FLAGS_RELAY", ""):
            return False  # a relay has no database: the upstream runs these jobs
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"flagsite-{self.name}", daemon=True)
        self._thread.start()
        return True

    def stop(self):
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def wake(self):
        """Ask the thread to run now; False when this process has none (the caller works inline)."""
        if self._thread is None:
            return False
        self._wake.set()
        return True

    def _loop(self):
        while not self._stop.is_set():
            self._wake.wait(self.interval())
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.job()
            except Exception:  # a database that is down now may be back at the next run
                self.logger.exception("%s failed; retrying in %ss", self.name, self.interval())
            finally:
                close_old_connections()
