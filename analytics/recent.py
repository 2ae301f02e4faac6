"""Recent evaluation contexts: a few real (user id, context) pairs per flag, for "Evaluate as".

The recorder (analytics/counters.py) calls ``RecentContexts.sample`` from ``Recorder.record`` at most
once per flag per second: the hot path pays two indexings and a compare; only the
sampled call copies its context, with sizes capped (``MAX_ATTRIBUTES`` attributes, strings cut at
``MAX_STRING`` characters, nesting ``MAX_DEPTH`` deep, ``MAX_BYTES`` of JSON in all). The last
``KEEP`` samples of each flag wait in process and are written to the Django cache on the
recorder's own flush (every ``FLAGS_ANALYTICS_FLUSH_SECONDS``), merged with what other processes
wrote there, for ``TTL_SECONDS`` (24 h): Redis shares them across processes and nodes; the
embedded in-memory cache keeps them in the one process. A sample older than 24 h is never shown.

``FLAGS_RECENT_CONTEXTS = False`` (environment variable, default on) turns it off: nothing is
copied or stored, and ``read`` answers nothing, also for what was stored before.

Privacy: a context is whatever the caller sent (it may hold e-mail addresses, IP addresses...).
It is kept only in the cache, never in the database, and shown only to those who may view flags
in the flag's project.

Per project: samples are kept per (project, flag) ``slot``: the flag key in the default project
(the cache keys written before projects), "<project>:<flag>" in any other (":" never occurs in a
flag key), so a flag key used by two projects never shows one project's contexts in the other.
``read`` answers the current project's (projects/scope.py).
"""

import json
import logging
import math
import threading
import time
from collections import deque

from django.conf import settings

logger = logging.getLogger(__name__)

KEEP = 10  # samples per flag
MAX_ATTRIBUTES = 40  # attributes per object (the first ones kept)
MAX_KEY = 100  # characters of an attribute name; longer names are dropped
MAX_STRING = 200  # characters of a string value (longer ones are cut)
MAX_ITEMS = 20  # items of a list
MAX_DEPTH = 3  # nested objects / lists below the context
MAX_BYTES = 4096  # the whole context as JSON; attributes dropped from the end until it fits
TTL_SECONDS = 24 * 3600
CACHE_PREFIX = "flagsite:recent-contexts:"


def enabled():
    return bool(getattr(settings, "FLAGS_RECENT_CONTEXTS", True))


def slot(project_key, flag_key):
    """Where a flag's samples are kept: the flag key in the default project, "<project>:<flag>" else."""
    from projects.models import DEFAULT

    return flag_key if not project_key or project_key == DEFAULT else f"{project_key}:{flag_key}"


def cache_key(flag_key, project_key=None):
    return f"{CACHE_PREFIX}{slot(project_key, flag_key)}"


def _capped(value, depth):
    """A JSON-serializable copy of `value` within the caps (None for what cannot be kept)."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return value[:MAX_STRING]
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # NaN and infinities are not JSON
    if depth >= MAX_DEPTH:
        return None
    if isinstance(value, dict):
        return _capped_object(value, depth + 1)
    if isinstance(value, list | tuple):
        return [_capped(item, depth + 1) for item in list(value)[:MAX_ITEMS]]
    return str(value)[:MAX_STRING]


def _capped_object(obj, depth):
    kept = {}
    for name, value in list(obj.items()):
        if len(kept) >= MAX_ATTRIBUTES:
            break
        if not isinstance(name, str) or len(name) > MAX_KEY:
            continue
        kept[name] = _capped(value, depth)
    return kept


def capped_context(context):
    """(context within every cap, truncated?): what a sample keeps of a caller's context."""
    if not isinstance(context, dict):
        return {}, bool(context)
    kept = _capped_object(context, 0)
    truncated = len(kept) < len(context) or _differs(kept, context)
    while kept and json_size(kept) > MAX_BYTES:
        kept.pop(next(reversed(kept)))
        truncated = True
    return kept, truncated


def json_size(value):
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _differs(kept, original):
    try:
        return kept != original
    except Exception:  # an exotic value that refuses comparison: call it cut
        return True


class RecentContexts:
    """Samples waiting in this process (``pending``) and, per flag, a cell holding the second of its
    last sample (``cell``: the recorder keeps it in each of the flag's counter entries, so its hot
    path reads ``entry[2][0]``: two indexings and a compare)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.last = {}  # slot (project, flag) -> [the second (int epoch) of its last sample]
        self.pending = {}  # slot -> deque of samples not yet written to the cache

    def cell(self, flag):
        """The slot's one-item list [second of its last sample], shared by all its counter entries."""
        cell = self.last.get(flag)
        if cell is None:
            with self._lock:
                cell = self.last.setdefault(flag, [None])
        return cell

    def sample(self, evaluation, user_id, context, second, cell=None):
        """Keep this evaluation's user and context, unless this flag was sampled this second
        (`second`: the recorder's clock, int epoch seconds; the sample's "at")."""
        from projects import scope

        project, environment = scope.split(evaluation.environment)
        flag = slot(project, evaluation.flag_id)
        cell = self.cell(flag) if cell is None else cell
        with self._lock:
            if cell[0] == second:
                return False  # another thread took this second's sample
            cell[0] = second
        if not enabled():
            return False
        if user_id is None and isinstance(context, dict):
            user_id = context.get("userId")
        kept, truncated = capped_context(context)
        sample = {
            "at": second,
            "environment": environment,
            "userId": None if user_id is None else str(user_id)[:MAX_STRING],
            "context": kept,
            "enabled": bool(evaluation.enabled),
            "variant": evaluation.variant,
            "reason": evaluation.reason,
        }
        if truncated:
            sample["truncated"] = True
        queue = self.pending.get(flag)
        if queue is None:
            with self._lock:
                queue = self.pending.setdefault(flag, deque(maxlen=KEEP))
        queue.append(sample)
        return True

    def take(self):
        """{slot: [samples]} waiting, removed from the process (to write them to the cache)."""
        taken = {}
        with self._lock:
            for flag, queue in list(self.pending.items()):
                samples = []
                while queue:
                    samples.append(queue.popleft())
                if samples:
                    taken[flag] = samples
                else:
                    del self.pending[flag]
        return taken

    def put_back(self, taken):
        """Samples a failed cache write could not store: waiting again (still at most KEEP a flag)."""
        with self._lock:
            for flag, samples in taken.items():
                queue = self.pending.setdefault(flag, deque(maxlen=KEEP))
                for sample in sorted([*samples, *queue], key=_at)[-KEEP:]:
                    if sample not in queue:
                        queue.append(sample)
                ordered = sorted(queue, key=_at)
                queue.clear()
                queue.extend(ordered)

    def flush(self, cache=None):
        """Write the waiting samples to the cache, merged with what is there (other processes').
        Returns the number of samples written; on a cache error they wait for the next flush."""
        taken = self.take()
        if not taken:
            return 0
        if not enabled():
            return 0  # turned off meanwhile: drop them
        if cache is None:
            from django.core.cache import cache
        try:
            keys = {flag: CACHE_PREFIX + flag for flag in taken}
            stored = cache.get_many(list(keys.values()))
            cache.set_many({keys[flag]: merge(stored.get(keys[flag]), samples) for flag, samples in taken.items()},
                           timeout=TTL_SECONDS)
        except Exception as exc:
            logger.warning("recent contexts: cache write failed, keeping %d samples for the next flush: %s",
                           sum(len(s) for s in taken.values()), exc)
            self.put_back(taken)
            return 0
        return sum(len(samples) for samples in taken.values())

    def read(self, flag_key, cache=None, now=None, project=None):
        """The flag's recent samples in ``project`` (default: the current one), newest first: the
        cache's (every process's flushed ones) and this process's waiting ones; none older than 24 h;
        nothing when sampling is off."""
        if not enabled():
            return []
        if project is None:
            from projects import scope

            project = scope.current()
        flag_key = slot(project, flag_key)
        if cache is None:
            from django.core.cache import cache
        try:
            stored = cache.get(CACHE_PREFIX + flag_key)
        except Exception as exc:
            logger.warning("recent contexts: cache read failed: %s", exc)
            stored = None
        with self._lock:
            queue = self.pending.get(flag_key)
            local = list(queue) if queue else []
        return list(reversed(merge(stored, local, now=now)))


def _at(sample):
    return sample.get("at", 0)


def merge(stored, samples, now=None):
    """The last KEEP of both (oldest first), duplicates once, none older than TTL_SECONDS."""
    cutoff = (time.time() if now is None else now) - TTL_SECONDS
    merged = []
    for sample in sorted([*(stored if isinstance(stored, list) else []), *samples], key=_at):
        if isinstance(sample, dict) and _at(sample) >= cutoff and sample not in merged:
            merged.append(sample)
    return merged[-KEEP:]


def attributes_seen(samples):
    """Context attribute names of the samples, the most frequent first (ties: first seen)."""
    names = [name for sample in samples for name in (sample.get("context") or {})]
    return sorted(dict.fromkeys(names), key=lambda name: -names.count(name))
