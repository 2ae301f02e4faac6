"""In-process evaluation counters: the only thing an evaluation touches.

``record(evaluation, user_id)`` adds one to an exact counter keyed (environment, flag, variant,
enabled, hour) and the user id to the flag-hour's set of users. No lock, no I/O: the counter is an
``itertools.count`` (``next()`` is one atomic C call under the GIL) and ``set.add`` is atomic too.
A background thread (started on first use) flushes every ``FLAGS_ANALYTICS_FLUSH_SECONDS``: it
takes the counter deltas since the last flush and turns the users seen into HyperLogLog sketches,
then hands the batch to the Celery task ``analytics.tasks.rollup_batch`` (Redis broker; eager with
no REDIS_URL), which upserts the hourly rollup rows. A batch the broker refuses is kept and sent
with the next flush. Process exit (atexit) flushes what is left.

At most once per flag per second ``record`` also keeps the evaluation's user and context for
"Evaluate as" (analytics/recent.py; the hot path pays two indexings and a compare), written to the
cache on the same flush. ``FLAGS_RECENT_CONTEXTS = False`` keeps none.

Other in-process buffers ride this machinery with ``attach`` (experiments/buffers.py: events and
exposures): flushed on the same thread, at exit, reset with the counters and after fork; its
``on_variant`` hook is called by ``record`` for an evaluation that returned a variant to a user
(one attribute test when detached).

Call sites: REST /api/evaluate and /api/evaluate/bulk (flags/apis.py), SDK reports
(/api/sdk/metrics -> ``record_counts``). gRPC and OFREP call ``record`` / ``record_all`` too.
Unknown flags (FLAG_NOT_FOUND) are not counted: clients could otherwise fill the tables with
arbitrary keys.
"""

import atexit
import base64
import itertools
import logging
import os
import threading
import time
from collections import Counter

from celery.result import EagerResult
from django.conf import settings

from analytics.hll import HyperLogLog
from analytics.recent import RecentContexts, slot

logger = logging.getLogger(__name__)

FLAG_NOT_FOUND = "FLAG_NOT_FOUND"


def _value(counter):
    return int(repr(counter)[6:-1])  # "count(N)": N evaluations so far


class Recorder:
    def __init__(self):
        self._lock = threading.Lock()  # slow paths only: new keys, bulk adds, start
        self._flush_lock = threading.Lock()
        self._reset_state()
        self._thread = None
        self._stop = threading.Event()
        self._atexit = False
        self._extensions = []  # attach(): other buffers flushed on this thread (experiments/buffers.py)
        self.on_variant = None  # attach(): called as on_variant(evaluation, user_id, second) for variants
        self.on_reported_exposures = None  # attach(): takes the exposure rows of an SDK report

    def attach(self, extension, on_variant=None, on_reported_exposures=None):
        """Flush ``extension`` (``flush()``, ``reset()``) with the counters: same thread, interval,
        exit and fork handling. ``on_variant``: called from ``record`` for an evaluation with a
        variant and a user (exposures), so every surface that counts reports it too;
        ``on_reported_exposures(rows)``: the exposures an SDK's local mode reported."""
        if extension not in self._extensions:
            self._extensions.append(extension)
        if on_variant is not None:
            self.on_variant = on_variant
        if on_reported_exposures is not None:
            self.on_reported_exposures = on_reported_exposures

    def record_exposures(self, rows):
        """Exposure rows of an SDK report ([environment, flag, user, first variant, last variant,
        first seen, last seen, changes]) for the attached exposure buffer, if any."""
        if self.on_reported_exposures is not None:
            self.on_reported_exposures(rows)

    def wake(self):
        """Start the flush thread if it is not running (a buffer just took its first item)."""
        self._ensure_started()

    def _reset_state(self):
        # (env, flag, variant, enabled, hour) -> (itertools.count, users set, the flag's sample cell)
        self._entries = {}
        self._reported = {}  # key -> counter value already flushed
        self._users = {}  # (env, flag, hour) -> set of user ids seen since the last flush
        self._extra = Counter()  # counts added in bulk (SDK reports)
        self._pending = None  # a batch the broker refused, retried with the next flush
        self.recent = RecentContexts()  # sampled contexts for "Evaluate as" (analytics/recent.py)

    # -- hot path ---------------------------------------------------------------------------------

    def record(self, evaluation, user_id=None, context=None, _time=time.time, _next=next):
        """Count one evaluation (an engine Evaluation) for one user. ~0.3 us; never any I/O.
        At most once per flag per second, also keep its user and context (analytics/recent.py)."""
        if evaluation.reason == FLAG_NOT_FOUND:
            return
        second = int(_time())
        key = (evaluation.environment, evaluation.flag_id, evaluation.variant, evaluation.enabled,
               second // 3600)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._new_entry(key)
        _next(entry[0])
        if entry[2][0] != second:  # the flag's last sampled second (shared by its entries)
            self.recent.sample(evaluation, user_id, context, second, entry[2])
        if user_id.__class__ is not str:
            if user_id is None:
                if not context or context.__class__ is not dict:
                    return
                user_id = context.get("userId")
                if user_id is None:
                    return
            user_id = str(user_id)  # hashable, and the same user whether sent as 42 or "42"
        entry[1].add(user_id)
        # an exposure is a variant handed out while on: an off variant (docs/rules.md) is not one
        if evaluation.variant is not None and evaluation.enabled and self.on_variant is not None:
            self.on_variant(evaluation, user_id, second)

    def record_all(self, evaluations, user_id=None, context=None):
        """Count a bulk evaluation: each flag once, even when a client listed it twice."""
        seen = set()
        record = self.record
        for evaluation in evaluations:
            if evaluation.flag_id not in seen:
                seen.add(evaluation.flag_id)
                record(evaluation, user_id, context)

    def record_counts(self, *, environment, flag_id, variant, enabled, count, hour=None):
        """Add ``count`` evaluations at once (an SDK's local-mode report)."""
        if count <= 0:
            return
        hour = int(time.time()) // 3600 if hour is None else hour
        with self._lock:
            self._extra[(environment, flag_id, variant, bool(enabled), hour)] += count
        self._ensure_started()

    def _new_entry(self, key):
        from projects import scope

        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                users = self._users.setdefault((key[0], key[1], key[4]), set())
                cell = self.recent.cell(slot(scope.split(key[0])[0], key[1]))  # per project and flag
                entry = self._entries[key] = (itertools.count(), users, cell)
        self._ensure_started()
        return entry

    # -- flushing ---------------------------------------------------------------------------------

    def collect(self):
        """The batch of everything counted since the last collect (JSON-serializable), or None."""
        current_hour = int(time.time()) // 3600
        counts = Counter()
        for key, entry in list(self._entries.items()):
            total = _value(entry[0])
            delta = total - self._reported.get(key, 0)
            if delta:
                counts[key] += delta
                self._reported[key] = total
            elif key[4] < current_hour - 1:  # an hour long gone with nothing new: forget it
                with self._lock:
                    self._entries.pop(key, None)
                self._reported.pop(key, None)
        with self._lock:
            extra, self._extra = self._extra, Counter()
        counts.update(extra)
        users = []
        for ukey, seen in list(self._users.items()):
            taken = list(seen)  # one atomic C call; users added meanwhile stay for the next flush
            if taken:
                seen.difference_update(taken)
                sketch = HyperLogLog.of(taken).to_bytes()
                users.append([*ukey, base64.b64encode(sketch).decode("ascii")])
            elif ukey[2] < current_hour - 1:
                with self._lock:
                    self._users.pop(ukey, None)
        if not counts and not users:
            return None
        return {"counts": [[*key, n] for key, n in counts.items()], "users": users}

    def _flush_counts(self):
        from analytics.tasks import rollup_batch

        with self._flush_lock:
            batch = self.collect()
            if self._pending is not None:
                batch = _merge_batches(self._pending, batch)
                self._pending = None
            if batch is None:
                return 0
            if getattr(settings, "FLAGS_RELAY", ""):  # a relay: upstream in batches (relay/outbox.py)
                from relay.outbox import outbox

                outbox.put("counts", batch)
                return sum(row[-1] for row in batch["counts"])
            try:
                result = rollup_batch.delay(batch)
                if isinstance(result, EagerResult) and result.failed():  # eager: the task ran here
                    raise RuntimeError(f"rollup task failed: {result.result!r}")
            except Exception as exc:
                logger.warning("analytics flush failed, keeping %d counts for the next one: %s",
                               len(batch["counts"]), exc)
                self._pending = batch
                return 0
            return sum(row[-1] for row in batch["counts"])

    def flush(self):
        """Collect and hand the batch to the rollup task, and write the sampled contexts to the
        cache. Returns the number of evaluations sent."""
        sent = self._flush_counts()  # first: a cache that is slow to fail never delays the counts
        try:
            self.recent.flush()
        except Exception:
            logger.exception("recent contexts flush failed")
        for extension in list(self._extensions):
            try:
                extension.flush()
            except Exception:
                logger.exception("%s flush failed", type(extension).__name__)
        return sent

    def pending_evaluations(self):
        """Evaluations counted but not yet handed to a rollup task (for tests and the pages)."""
        total = sum(_value(entry[0]) - self._reported.get(key, 0) for key, entry in list(self._entries.items()))
        total += sum(self._extra.values())
        if self._pending:
            total += sum(row[-1] for row in self._pending["counts"])
        return total

    # -- background thread ------------------------------------------------------------------------

    def _ensure_started(self):
        if self._thread is not None or not getattr(settings, "FLAGS_ANALYTICS_AUTOFLUSH", True):
            return
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="analytics-flush", daemon=True)
            self._thread.start()
            if not self._atexit:
                atexit.register(self.flush_at_exit)
                self._atexit = True

    def _run(self):
        from django.db import connections

        interval = float(getattr(settings, "FLAGS_ANALYTICS_FLUSH_SECONDS", 5))
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception:
                logger.exception("analytics flush failed")
            finally:
                connections.close_all()  # this thread's connections only

    def flush_at_exit(self):
        self._stop.set()
        try:
            self.flush()
        except Exception:
            logger.exception("analytics flush at exit failed")

    def stop(self):
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def reset(self):
        """Forget everything counted (tests; a forked child must not flush its parent's counts)."""
        self.stop()
        with self._flush_lock, self._lock:
            self._reset_state()
        for extension in list(self._extensions):
            extension.reset()

    def _after_fork(self):
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
        self._reset_state()
        for extension in list(self._extensions):
            extension.reset()


def _merge_batches(old, new):
    """One batch with both: counts summed and sketches merged per key, so a batch kept through a
    long broker outage stays one row per key instead of growing by a row per failed flush."""
    if new is None:
        return old
    counts = Counter()
    for *key, n in old["counts"] + new["counts"]:
        counts[tuple(key)] += n
    sketches = {}
    for *key, data in old["users"] + new["users"]:
        key, sketch = tuple(key), HyperLogLog.from_bytes(base64.b64decode(data))
        sketches[key] = sketches[key].merge(sketch) if key in sketches else sketch
    return {"counts": [[*key, n] for key, n in counts.items()],
            "users": [[*key, base64.b64encode(sketch.to_bytes()).decode("ascii")] for key, sketch in sketches.items()]}


recorder = Recorder()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=recorder._after_fork)

# The public API: analytics.counters.record(evaluation, user_id[, context]).
record = recorder.record
record_all = recorder.record_all
record_counts = recorder.record_counts
flush = recorder.flush
