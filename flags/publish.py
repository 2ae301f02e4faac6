"""Publishing committed changes to live clients.

Services call ``after_commit`` from ``transaction.on_commit``, so nobody hears of a change before
it is committed. It only sends a small "environment E is now at version V" notice: every serving
process's watcher (flags/live.py) then reloads its own snapshot and derives the flag.changed
events itself, so a lost notice costs at most one staleness interval, never a change.

The shared parts (the snapshot payload in the cache, the notice on the channel layer) talk to Redis,
which may hang rather than refuse (a stopped process: each call waits out its socket timeout, 1 s
for the cache, 15 s twice for the notice). A committed write's response must not wait for them (a
client that timed out and retried a toggle would flip the flag back), so with Redis they run on one
background thread per process, in commit order, from a bounded queue. The writing process still
answers with its own change at once: its compiled snapshot is marked stale here, with no I/O.
"""

import atexit
import logging
import os
import queue
import threading
import time

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction

from flags import snapshot
from flags.live import send_notice

logger = logging.getLogger(__name__)

OUTBOX_SIZE = 1000  # pending jobs per process; past it a job is dropped (the version poll covers it)


def on_commit(versions, action, **keys):
    """Run ``after_commit`` when the current transaction commits, ahead of the other hooks the same
    atomic block registered before it (the audit log's followers): a fresh process's first webhook
    enqueue imports and connects Celery's transport, 100+ ms that held the GIL from a CLI kill
    switch's notice. Notices keep their order among themselves."""
    def notice():
        after_commit(versions, action, **keys)

    notice.is_notice = True
    transaction.on_commit(notice, robust=True)
    connection = transaction.get_connection()
    if not connection.in_atomic_block:  # no transaction: Django ran it already
        return
    hooks = connection.run_on_commit  # Django's list of (savepoint ids, hook, robust)
    mine = hooks.pop()
    first_other = next((i for i, (savepoints, hook, _) in enumerate(hooks)
                        if savepoints == mine[0] and not getattr(hook, "is_notice", False)), len(hooks))
    hooks.insert(first_other, mine)


def after_commit(versions, action, *, flag_key=None, segment_key=None):
    """{environment key: committed version}: refresh this process now, share the change off the
    request path when sharing means network I/O."""
    payloads = {}
    for environment, version in versions.items():
        snapshot.environment_changed(environment)  # this process re-checks at once; no I/O
        payloads[environment] = snapshot.build_payload(environment)  # same connection: sees the commit

    def share():
        for environment, version in versions.items():
            snapshot.share_payload(payloads[environment])
            publish_change(environment=environment, version=version, action=action, flag_key=flag_key,
                           segment_key=segment_key)

    if _in_process():
        share()  # nothing to hang on; an in-memory layer also belongs to this thread's event loop
    else:
        _outbox.put(share)


def warm_up():
    """Load the shared cache's and channel layer's clients now, before a write: a fresh process (a
    CLI kill switch) otherwise pays their imports, about 60 ms, between its commit and the notice."""
    caches["default"]
    get_channel_layer()


def notices_sent(timeout):
    """Wait until this process's queued shares and notices went out, at most timeout seconds."""
    return _outbox.join(timeout)


def publish_change(*, environment, version, action, flag_key=None, segment_key=None):
    """Announce that `environment` (key) moved to `version` because of `action` on a flag/segment."""
    logger.debug("change %s %s env=%s v=%s", action, flag_key or segment_key, environment, version)
    send_notice(environment=environment, version=version)


def _in_process():
    layer = get_channel_layer()
    return isinstance(caches["default"], (LocMemCache, DummyCache)) and (
        layer is None or isinstance(layer, InMemoryChannelLayer))


# The exit wait must run before the interpreter's shutdown stops concurrent.futures: a notice sent
# from an atexit hook failed every time ("cannot schedule new futures after interpreter shutdown",
# async_to_sync needs an executor), so a CLI kill reached servers only by their version poll.
# threading's hooks run once the main thread is done, before that (latest registered first).
at_shutdown = getattr(threading, "_register_atexit", atexit.register)


class Outbox:
    """One daemon thread draining a bounded queue of callables in order (started on first use, and
    again in a forked child, which inherits the queue but not the thread). At exit a process waits
    a little for what is queued (a CLI command's notice), never long (a hung Redis)."""

    EXIT_WAIT_SECONDS = 5.0

    def __init__(self, size=OUTBOX_SIZE):
        self._size = size
        self._queue = None
        self._pid = None
        self._lock = threading.Lock()

    def put(self, job):
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._queue = queue.Queue(self._size)
                    threading.Thread(target=self._run, args=(self._queue,), name="flagsite-outbox",
                                     daemon=True).start()
                    if self._pid is None:
                        at_shutdown(self.join, self.EXIT_WAIT_SECONDS)
                    self._pid = os.getpid()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            logger.warning("change outbox full (%d): a cache refresh and notice dropped; watchers' "
                           "version poll still finds the change", self._size)

    def join(self, timeout):
        """Wait until every queued job ran, at most timeout seconds; whether they all did."""
        deadline = time.monotonic() + timeout
        while self._queue is not None and self._pid == os.getpid() and self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    @staticmethod
    def _run(jobs):
        while True:
            job = jobs.get()
            try:
                job()
            except Exception:  # one failed share must not stop the ones after it
                logger.exception("after-commit job failed")
            finally:
                jobs.task_done()


_outbox = Outbox()
