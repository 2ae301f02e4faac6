"""The relay's outbox: counts, exposures and events recorded here, on their way upstream.

The relay's analytics recorder and experiment buffers flush to ``put`` instead of their Celery
tasks (analytics/counters.py, experiments/buffers.py). Each flush becomes one batch with its own
id; a sender thread posts batches in order to the upstream's /api/relay/ingest every
FLAGS_RELAY_FLUSH_SECONDS. A failed post keeps the batch, with the same id, for the next try, so
the upstream applies it once however often it is retried. While the upstream is away at most
FLAGS_RELAY_OUTBOX_MAX batches wait; past that the oldest is dropped and counted (``dropped``,
``dropped_items``; /metrics and /api/health show them).
"""

import atexit
import json
import logging
import threading
import uuid
from collections import deque

import requests
from django.conf import settings

logger = logging.getLogger(__name__)


class Outbox:
    def __init__(self):
        self._lock = threading.Lock()
        self._batches = deque()
        self.dropped = 0  # batches dropped because the buffer was full
        self.dropped_items = 0
        self.sent = 0
        self.failures = 0
        self._thread = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._session = None

    def put(self, kind, data):
        """One flushed batch of one kind ("counts", "events", "exposures")."""
        self.put_batch({kind: data})

    def put_batch(self, parts):
        batch = {"batch": uuid.uuid4().hex, "counts": parts.get("counts"), "events": parts.get("events") or [],
                 "exposures": parts.get("exposures") or []}
        limit = max(1, int(getattr(settings, "FLAGS_RELAY_OUTBOX_MAX", 1000)))
        with self._lock:
            self._batches.append(batch)
            while len(self._batches) > limit:
                old = self._batches.popleft()
                self.dropped += 1
                self.dropped_items += _items(old)
                logger.warning("relay outbox full (%d batches): dropped batch %s", limit, old["batch"])
        self.start()

    def pending(self):
        return len(self._batches)

    def pending_items(self):
        return sum(_items(batch) for batch in list(self._batches))

    def send_pending(self):
        """Post every waiting batch in order; stop at the first failure (kept for the next try)."""
        sent = 0
        while True:
            with self._lock:
                if not self._batches:
                    return sent
                batch = self._batches[0]
            try:
                self._post(batch)
            except Exception as exc:
                self.failures += 1
                logger.warning("relay outbox: upstream did not take batch %s (%d waiting): %s",
                               batch["batch"], len(self._batches), exc)
                return sent
            with self._lock:
                if self._batches and self._batches[0] is batch:
                    self._batches.popleft()
            self.sent += 1
            sent += 1

    def _post(self, batch):
        if self._session is None:
            self._session = requests.Session()
        response = self._session.post(
            f"{settings.FLAGS_RELAY}/api/relay/ingest", data=json.dumps(batch, separators=(",", ":")),
            headers={"Authorization": f"Bearer {settings.FLAGS_RELAY_TOKEN}", "Content-Type": "application/json"},
            timeout=10)
        if response.status_code in (200, 201, 202):
            return
        if 400 <= response.status_code < 500 and response.status_code not in (401, 408, 429):
            # the upstream will never take it (a bug, or an environment this token lost): drop it
            self.dropped += 1
            self.dropped_items += _items(batch)
            logger.error("relay outbox: upstream refused batch %s for good (%s): %s", batch["batch"],
                         response.status_code, response.text[:300])
            return
        raise RuntimeError(f"HTTP {response.status_code}")

    def start(self):
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="relay-outbox", daemon=True)
            self._thread.start()
            atexit.register(self.flush_at_exit)

    def wake(self):
        self._wake.set()

    def _run(self):
        interval = float(getattr(settings, "FLAGS_RELAY_FLUSH_SECONDS", 2.0))
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self.send_pending()
            except Exception:
                logger.exception("relay outbox failed")

    def flush_at_exit(self):
        self._stop.set()
        try:
            from analytics.counters import recorder

            recorder.flush()
            self.send_pending()
        except Exception:
            logger.exception("relay outbox flush at exit failed")

    def reset(self):
        with self._lock:
            self._batches.clear()
            self.dropped = self.dropped_items = self.sent = self.failures = 0


def _items(batch):
    counts = batch.get("counts") or {}
    return (sum(row[-1] for row in counts.get("counts", ())) + len(batch.get("events") or ())
            + len(batch.get("exposures") or ()))


outbox = Outbox()
