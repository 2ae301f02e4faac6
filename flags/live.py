"""Live propagation (ARCHITECTURE section 4): one watcher per serving process.

A committed write bumps its environment's version and sends a small notice on the channel layer
(``publish.publish_change``). Every serving process runs one ``Watcher``: it wakes on a notice or
every FLAGS_MAX_STALENESS_MS regardless, reads the environments' versions (one small query), and
when one moved it reloads that environment's snapshot in this process first, then derives the
``flag.changed`` events by comparing the old and new snapshot payloads and pushes each event,
serialized once, to this process's WebSocket clients and gRPC watchers.

Deriving events from the payloads (instead of trusting the notice) is what makes a lost notice
harmless: a change made by a CLI process with no shared channel layer, or while Redis is down, is
still found by the version poll, and no client hears of a change before this node answers with it.
"""

import asyncio
import json
import logging
import threading
import time
import weakref
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection

from flags import snapshot
from flags.models import Environment
from projects import scope

logger = logging.getLogger(__name__)

NOTICE_GROUP = "flagsite.versions"
HISTORY_LENGTH = 256  # version moves remembered per environment for ?since= resumes


def staleness():
    return getattr(settings, "FLAGS_MAX_STALENESS_MS", 100) / 1000.0


def ping_interval():
    return getattr(settings, "FLAGS_WS_PING_SECONDS", 20.0)


def _flag_action(old, new):
    if old is None:
        return "created"
    if new is None:
        return "deleted"
    if old.get("killed") != new.get("killed"):
        return "killed" if new.get("killed") else "restored"
    if {**old, "enabled": None, "version": None} == {**new, "enabled": None, "version": None}:
        return "toggled" if old.get("enabled") != new.get("enabled") else None
    return "updated"


def change_events(old_payload, new_payload):
    """flag.changed events turning one snapshot payload into the next (one environment)."""
    environment, version = new_payload["environment"], new_payload["version"]
    old_flags = {flag["key"]: flag for flag in old_payload["flags"]}
    new_flags = {flag["key"]: flag for flag in new_payload["flags"]}
    events = []
    for key in sorted(old_flags.keys() | new_flags.keys()):
        old, new = old_flags.get(key), new_flags.get(key)
        action = _flag_action(old, new)
        if action is not None:
            events.append({"type": "flag.changed", "action": action, "flag": new or old,
                           "environment": environment, "version": version})
    if not events:  # e.g. a segment edit: versions moved but no flag state did
        events.append({"type": "environment.changed", "environment": environment, "version": version})
    return events


class ChangeFeed:
    """Per process: the last payload seen per environment, and recent events for resumes.

    Synchronous (it queries the database); the watchers call ``poll`` from one dedicated thread.
    """

    def __init__(self):
        self.payloads = {}
        self.history = defaultdict(lambda: deque(maxlen=HISTORY_LENGTH))  # env -> (version, events)
        self.covered_from = {}  # env -> oldest version from which history can replay
        self._lock = threading.Lock()

    def poll(self):
        """Events for every environment whose version moved since the last poll."""
        polled_at = time.monotonic()
        try:
            versions = self._versions()
        except DatabaseError:
            connection.close()  # reconnect on the next poll (the database restarted or went away)
            raise
        events = []
        for environment, version in versions.items():
            known = self.payloads.get(environment)
            if known is not None and known["version"] == version:
                continue
            payload = snapshot.refresh(environment)
            with self._lock:
                if known is not None:
                    moved = change_events(known, payload)
                    history = self.history[environment]
                    if len(history) == history.maxlen:
                        self.covered_from[environment] = history[0][0]
                    history.append((payload["version"], moved))
                    events.extend(moved)
                else:
                    self.covered_from[environment] = payload["version"]
                self.payloads[environment] = payload
        # Every version was just read: serving threads need not re-check (no SQL on their path).
        snapshot.mark_checked(versions, polled_at)
        return events

    _versions_sql = None

    def _versions(self):
        """{environment: version} in one plain query: an idle poll through the ORM cost ~10x the
        CPU (~170 us against ~15 us, up to 40 times a second), on the GIL serving threads need."""
        if getattr(settings, "FLAGS_RELAY", ""):  # relay mode: the versions the relay follows
            from relay.state import state

            return state.versions()
        if self._versions_sql is None:
            quote, meta = connection.ops.quote_name, Environment._meta
            self._versions_sql = (f"SELECT {quote(meta.get_field('project').column)}, "
                                  f"{quote(meta.get_field('key').column)}, "
                                  f"{quote(meta.get_field('version').column)} FROM {quote(meta.db_table)}")
        with connection.cursor() as cursor:
            cursor.execute(self._versions_sql)
            return {scope.ref(project, key): version for project, key, version in cursor.fetchall()}

    def current(self, environment):
        return self.payloads.get(environment)

    def since(self, environment, version):
        """Events after `version`, or None when history no longer reaches back that far."""
        with self._lock:
            payload = self.payloads.get(environment)
            if payload is None:
                return None
            if version >= payload["version"]:
                return []
            if version < self.covered_from.get(environment, payload["version"]):
                return None
            return [event for moved_to, moved in self.history[environment] if moved_to > version
                    for event in moved]


class Watcher:
    """The asyncio watcher of a daphne process and its registry of local WebSocket clients."""

    def __init__(self):
        self.feed = ChangeFeed()
        self.clients = defaultdict(set)  # environment key -> consumers
        self.listeners = []  # callables(event) in other threads (gRPC WatchFlags streams)
        self.wakeup = None
        self._task = None
        self._starting = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flagsite-watcher")

    async def start(self):
        """Take the baseline and run the watch loop in this event loop, once per process: clients
        that connect while the first one's baseline poll is still running wait for that start
        instead of each starting a loop of their own (bench/soak.py found 50 loops polling)."""
        starting = self._starting
        if starting is None or (starting.done() and (starting.cancelled() or starting.exception() or self._task.done())):
            starting = self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(starting)

    async def _start(self):
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.feed.poll)
        self.wakeup = asyncio.Event()
        self._loop = loop
        self._task = loop.create_task(self._run())

    async def _listen(self):
        """Wake the loop on every notice from any process (Redis pub/sub or in-process layer)."""
        layer = get_channel_layer()
        while True:
            try:
                channel = await layer.new_channel()
                await layer.group_add(NOTICE_GROUP, channel)
                while True:
                    await layer.receive(channel)
                    self.wakeup.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # layer down (Redis stopped): the version poll still runs
                logger.warning("flag change notices unavailable, polling only: %s", exc)
                await asyncio.sleep(1.0)

    async def _run(self):
        listener = asyncio.get_running_loop().create_task(self._listen())
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + ping_interval()
        try:
            while True:
                if loop.time() >= next_ping:  # keeps idle connections (and proxies) alive
                    next_ping = loop.time() + ping_interval()
                    await self.ping()
                try:
                    # A quarter of the bound, so that poll + snapshot reload land well within it
                    # even on a busy machine (an idle poll is one indexed query, ~1 ms).
                    await asyncio.wait_for(self.wakeup.wait(), timeout=staleness() / 4)
                except asyncio.TimeoutError:
                    pass
                self.wakeup.clear()
                try:
                    events = await loop.run_in_executor(self._executor, self.feed.poll)
                except Exception as exc:  # database down: keep serving the snapshot we have
                    logger.warning("flag version check failed: %s", exc)
                    await asyncio.sleep(staleness())
                    continue
                for event in events:
                    await self.broadcast(event)
        finally:
            listener.cancel()

    _loop = None

    def wake_threadsafe(self):
        """Poll now, from any thread (relay/follower.py after an update it applied)."""
        loop, wakeup = self._loop, self.wakeup
        if loop is not None and wakeup is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # the loop just closed
                pass

    async def broadcast(self, event):
        """Serialize once; write the same frame to every local client of the environment that a
        resume has not already sent it (FlagConsumer._resume)."""
        version = event["version"]
        clients = [client for client in self.clients.get(event["environment"], ()) if client.delivered < version]
        await self._write(clients, json.dumps(event, separators=(",", ":")))
        for listener in list(self.listeners):
            listener(event)

    async def ping(self):
        await self._write([c for clients in self.clients.values() for c in clients], '{"type":"ping"}')

    @staticmethod
    async def _write(consumers, text):
        """Write to every client at once: each write is a round trip through the server (granian
        hands it to its own runtime and wakes the loop when done), so one after the other a kill
        reached the 1,000th client ~1,000 wake-ups late. Each client still gets its frames in order:
        the next broadcast starts after this one."""
        sent = await asyncio.gather(*(consumer.send(text_data=text) for consumer in list(consumers)),
                                    return_exceptions=True)
        for result in sent:
            if isinstance(result, Exception):  # a closing socket must not stop the others
                logger.debug("dropping a websocket client that could not be written to: %r", result)

    def register(self, environment, consumer):
        self.clients[environment].add(consumer)

    def unregister(self, environment, consumer):
        self.clients[environment].discard(consumer)

    def connection_count(self, project=None):
        """Open sockets in this process: all of them, or those following one project's environments."""
        return sum(len(clients) for ref, clients in list(self.clients.items())
                   if project is None or scope.split(ref)[0] == project)


watcher = Watcher()
thread_watchers = weakref.WeakSet()  # every ThreadWatcher of this process (relay/follower.py wakes them)


def send_notice(*, environment, version):
    """Tell every process's watcher that `environment` is now at `version` (best effort)."""
    from asgiref.sync import async_to_sync

    layer = get_channel_layer()
    if layer is None or not getattr(settings, "FLAGS_CHANGE_NOTICES", True):
        return
    message = {"type": "flags.version", "environment": environment, "version": version}
    for attempt in (1, 2):  # after a Redis restart the pooled connection fails once; a fresh one works
        try:
            async_to_sync(layer.group_send)(NOTICE_GROUP, message)
            return
        except Exception as exc:  # the watchers' version poll covers a lost notice
            if attempt == 2:
                logger.warning("could not send flag change notice: %s", exc)


class ThreadWatcher:
    """The watcher of a threaded process (the gRPC server): same ChangeFeed, plain threads.

    A poll thread runs ``ChangeFeed.poll()`` when a notice arrives and at least every quarter
    staleness interval regardless (an idle poll is one plain query, ``ChangeFeed._versions``), so a
    change made by any process (even with no shared channel layer) reaches subscribers well within
    FLAGS_MAX_STALENESS_MS; a listener thread (its own asyncio loop) wakes it on channel-layer
    notices when the layer crosses processes (Redis). An in-memory layer is not listened to:
    nothing reaches it from other processes, and its asyncio queues cannot wake a loop in another
    thread. Subscribers are callables(event), called from the poll thread; they must not block
    (the gRPC streams put events on their own queue).
    """

    NOTICE_REJOIN_SECONDS = 600.0  # channels-redis drops group members after group_expiry

    def __init__(self, feed=None):
        self.feed = feed or ChangeFeed()
        self._subscribers = {}  # token -> (environment, callback)
        self._next_token = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads = []
        self._loop = None
        thread_watchers.add(self)

    @property
    def running(self):
        return any(thread.is_alive() for thread in self._threads)

    def start(self):
        """Take the baseline (blocking, so `current()` answers at once) and start the threads."""
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            self.feed.poll()
            self._threads = [threading.Thread(target=self._run, name="flagsite-watch-poll", daemon=True)]
            if self._layer_crosses_processes():
                self._threads.append(threading.Thread(target=self._listen, name="flagsite-watch-notices", daemon=True))
            for thread in self._threads:
                thread.start()

    def stop(self, timeout=2.0):
        self._stopping.set()
        self._wake.set()
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        for thread in self._threads:
            thread.join(timeout)

    def wake(self):
        """Poll now (a notice arrived, or a caller knows something changed)."""
        self._wake.set()

    def subscribe(self, environment, callback):
        with self._lock:
            self._next_token += 1
            self._subscribers[self._next_token] = (environment, callback)
            return self._next_token

    def unsubscribe(self, token):
        with self._lock:
            self._subscribers.pop(token, None)

    def subscriber_count(self):
        return len(self._subscribers)

    def deliver(self, event):
        with self._lock:
            targets = [cb for env, cb in self._subscribers.values() if env == event["environment"]]
        for callback in targets:
            try:
                callback(event)
            except Exception:  # one broken subscriber must not starve the others
                logger.exception("flag change subscriber failed")

    def _run(self):
        interval = staleness() / 4  # as Watcher: poll + reload land well within the bound, even when busy
        while not self._stopping.is_set():
            self._wake.wait(timeout=interval)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                events = self.feed.poll()
            except Exception as exc:  # database down: keep serving the snapshot we have
                logger.warning("flag version check failed: %s", exc)
                self._stopping.wait(staleness())
                continue
            for event in events:
                self.deliver(event)
        connection.close()  # this thread's connection: a stopped watcher holds none

    @staticmethod
    def _layer_crosses_processes():
        from channels.layers import InMemoryChannelLayer

        layer = get_channel_layer()
        return layer is not None and not isinstance(layer, InMemoryChannelLayer)

    def _listen(self):
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen_async())
        except RuntimeError:  # loop stopped by stop()
            pass
        finally:
            loop.close()
            self._loop = None

    async def _listen_async(self):
        layer = get_channel_layer()
        while not self._stopping.is_set():
            try:
                channel = await layer.new_channel()
                await layer.group_add(NOTICE_GROUP, channel)
                rejoin_at = asyncio.get_running_loop().time() + self.NOTICE_REJOIN_SECONDS
                while not self._stopping.is_set():
                    try:
                        await asyncio.wait_for(layer.receive(channel), timeout=self.NOTICE_REJOIN_SECONDS)
                        self._wake.set()
                    except asyncio.TimeoutError:
                        pass
                    if asyncio.get_running_loop().time() >= rejoin_at:
                        await layer.group_add(NOTICE_GROUP, channel)
                        rejoin_at = asyncio.get_running_loop().time() + self.NOTICE_REJOIN_SECONDS
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # layer down (Redis stopped): the version poll still runs
                logger.warning("flag change notices unavailable, polling only: %s", exc)
                await asyncio.sleep(1.0)
