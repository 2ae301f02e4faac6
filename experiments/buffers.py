"""In-process buffers for events and exposures: the only thing a request or an evaluation touches.

Both ride the analytics recorder's flush machinery (analytics/counters.py ``Recorder.attach``):
the same background thread and interval (``FLAGS_ANALYTICS_FLUSH_SECONDS``), the same flush at
process exit and reset after fork. A flush hands each batch to a Celery task
(experiments/tasks.py; Redis broker, eager in the embedded run, as analytics does), which writes
it in bulk (experiments/services.py). A batch the broker refuses is kept for the next flush.

Events (``EventBuffer``): ``add(rows)`` appends already-validated rows (JSON-serializable lists);
at most ``FLAGS_EVENTS_BUFFER_MAX`` wait in a process, past that ``add`` refuses (the API answers
503 and clients retry: their ids make the retry idempotent).

Exposures (``ExposureBuffer``, the engine's ``ExposureTable`` that the SDK's local mode uses
too): ``see_evaluation(evaluation, user_id, second)`` is called by ``Recorder.record`` for every
evaluation that returned a variant to a known user, on REST, bulk, OFREP and gRPC alike, and
``add_reported(rows)`` takes the rows an SDK's local mode reports. Deduplicated in process: a
(environment, flag, user) already seen in the same variant this hour costs one dict lookup and
nothing else (so ``last_seen`` has hour resolution per process); a new one or a changed variant
goes into the batch under a lock. The dedupe table holds at most ``FLAGS_EXPOSURES_SEEN_MAX``
keys and starts over when full (the upsert makes a repeat harmless). ``FLAGS_EXPOSURES = False``
records none. When the experiments running in an environment change (its snapshot's payload
``experiments``, which every process reloads within FLAGS_MAX_STALENESS_MS of the start),
``experiments_changed`` restarts the table: a user evaluated right after the start is exposed at
once, whatever happened in the hour before.
"""

import logging
import threading

from celery.result import EagerResult
from django.conf import settings
from feature_flag_client.engine.exposures import ExposureTable

logger = logging.getLogger(__name__)


def _send(task, batch, what):
    if getattr(settings, "FLAGS_RELAY", ""):  # a relay: upstream in batches (relay/outbox.py)
        from relay.outbox import outbox

        outbox.put(what, batch)
        return
    result = task.delay(batch)
    if isinstance(result, EagerResult) and result.failed():  # eager: the task ran here
        raise RuntimeError(f"{what} task failed: {result.result!r}")


class EventBuffer:
    def __init__(self):
        self.reset()

    def reset(self):
        self._lock = threading.Lock()
        self._rows = []
        self._pending = None  # a batch the broker refused
        self.dropped = 0

    def add(self, rows):
        """Queue validated event rows; False (nothing queued) when the buffer is full."""
        limit = settings.FLAGS_EVENTS_BUFFER_MAX
        with self._lock:
            if len(self._rows) + len(rows) + len(self._pending or ()) > limit:
                self.dropped += len(rows)
                return False
            self._rows.extend(rows)
        _recorder().wake()
        return True

    def pending(self):
        return len(self._rows) + len(self._pending or ())

    def flush(self):
        """Hand everything queued to the write task; returns the number of events sent."""
        from experiments.tasks import write_events

        with self._lock:
            batch, self._rows = (self._pending or []) + self._rows, []
            self._pending = None
        if not batch:
            return 0
        try:
            _send(write_events, batch, "events")
        except Exception as exc:
            logger.warning("events flush failed, keeping %d events for the next one: %s", len(batch), exc)
            with self._lock:
                self._pending = batch + (self._pending or [])
            return 0
        return len(batch)


class ExposureBuffer(ExposureTable):
    """The server's exposure table (feature_flag_client.engine.exposures), flushed with the counters."""

    @property
    def max_seen(self):  # read at each use: tests and operators may change the setting
        return settings.FLAGS_EXPOSURES_SEEN_MAX

    def see_evaluation(self, evaluation, user_id, second):
        """Recorder.record's hook: one evaluation that returned an (on) variant to a known user."""
        key = (evaluation.environment, evaluation.flag_id, user_id)
        if self.seen.get(key) == evaluation.variant and second // 3600 == self._hour:
            return  # the hot path: already seen in this variant this hour
        if settings.FLAGS_EXPOSURES:
            self.see(*key, evaluation.variant, second)

    def add_reported(self, rows):
        """Rows an SDK's local mode reported (/api/sdk/metrics), already validated."""
        if settings.FLAGS_EXPOSURES and rows:
            self.keep(rows)  # as reported: an SDK's rows never span an experiment's start
            _recorder().wake()

    def pending(self):
        return len(self)

    def flush(self):
        """Hand the exposures seen since the last flush to the upsert task; returns the rows sent."""
        from experiments.tasks import write_exposures

        batch = self.take()
        if not batch:
            return 0
        try:
            _send(write_exposures, batch, "exposures")
        except Exception as exc:
            logger.warning("exposures flush failed, keeping %d for the next one: %s", len(batch), exc)
            self.keep(batch, first=True)
            return 0
        return len(batch)


def experiments_changed(environment_key, old_payload, new_payload):
    """flags/snapshot.py's reload hook: an experiment started or stopped in that environment."""
    if old_payload is not None and old_payload.get("experiments") != new_payload.get("experiments"):
        exposures.restart()


def _recorder():
    from analytics.counters import recorder

    return recorder


events = EventBuffer()
exposures = ExposureBuffer()


def install():
    """Attach both buffers to the analytics recorder (ExperimentsConfig.ready)."""
    recorder = _recorder()
    recorder.attach(events)
    recorder.attach(exposures, on_variant=exposures.see_evaluation, on_reported_exposures=exposures.add_reported)


def flush():
    """Flush both now (tests, commands); returns (events sent, exposures sent)."""
    return events.flush(), exposures.flush()
