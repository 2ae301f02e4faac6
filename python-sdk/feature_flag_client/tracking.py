"""Event tracking for the SDK clients: ``client.track(event, user_id, value=None, properties=None)``.

Events go into a bounded in-memory queue and a background thread (started on the first track)
sends them in batches to ``POST /api/events`` every ``flush_interval`` seconds, or as soon as
``batch_size`` are waiting. ``track`` never blocks on the network: when the queue is full the
event is dropped and counted (``dropped``). Each event gets an id when tracked, so a batch the
client resends (a 5xx, a timeout, a lost connection: retried with jittered backoff by the
client, then kept for the next flush) is stored once. A batch the server refuses as invalid
(4xx) is dropped and counted. ``close()`` (and process exit) sends what is left.
"""

import atexit
import collections
import logging
import threading
import time
import uuid
import weakref

from .errors import FlagsiteError, ServerError

log = logging.getLogger("feature_flag_client")


class EventTracker:
    def __init__(self, send, *, max_queue=10_000, batch_size=500, flush_interval=1.0):
        self._send = send  # send(list of event dicts); raises FlagsiteError on failure
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.dropped = 0  # events dropped: queue full, refused by the server, or unsendable at close
        self.sent = 0
        self._queue = collections.deque()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        ref = weakref.ref(self)
        atexit.register(lambda: (tracker := ref()) and tracker.close())

    def track(self, event, user_id, value=None, properties=None, timestamp=None):
        """Queue one event; False when it was dropped (queue full or closed)."""
        if not isinstance(event, str) or not event:
            raise ValueError("event: a non-empty name is required")
        if user_id is None or user_id == "":
            raise ValueError("user_id is required")
        item = {"id": uuid.uuid4().hex, "event": event, "userId": str(user_id),
                "timestamp": _iso(time.time() if timestamp is None else timestamp)}
        if value is not None:
            item["value"] = float(value)
        if properties:
            item["properties"] = dict(properties)
        with self._lock:
            if self._stop.is_set() or len(self._queue) >= self.max_queue:
                self.dropped += 1
                return False
            self._queue.append(item)
            waiting = len(self._queue)
        self._ensure_started()
        if waiting >= self.batch_size:
            self._wake.set()
        return True

    def pending(self):
        return len(self._queue)

    def flush(self):
        """Send everything queued now (in batches). Returns the number of events the server took;
        a batch that could not be sent (server or network down) goes back to the queue."""
        total = 0
        with self._send_lock:
            while True:
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                if not batch:
                    return total
                try:
                    self._send(batch)
                except (ServerError, FlagsiteError) as exc:
                    if _retryable(exc):
                        with self._lock:  # back to the front, as much as fits
                            room = self.max_queue - len(self._queue)
                            self._queue.extendleft(reversed(batch[:max(room, 0)]))
                            self.dropped += max(len(batch) - max(room, 0), 0)
                        log.debug("flagsite events not sent, kept for the next flush: %s", exc)
                        return total
                    self.dropped += len(batch)
                    log.warning("flagsite refused %d events: %s", len(batch), exc)
                    continue
                total += len(batch)
                self.sent += len(batch)

    def close(self):
        """Stop the thread and send what is left; whatever cannot be sent is counted as dropped."""
        if self._stop.is_set() and not self._queue:
            return
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()
        with self._lock:
            self.dropped += len(self._queue)
            self._queue.clear()

    def _ensure_started(self):
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True, name="flagsite-events")
                self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # never let the thread die
                log.exception("flagsite events flush failed")


def _retryable(exc):
    status = getattr(exc, "status", None)
    return status is None or status >= 500 or status == 429


def _iso(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"
