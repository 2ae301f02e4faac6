"""The relay's follower: keeps relay/state.py current from the upstream's /ws/relay stream.

One daemon thread per serving process (the web worker's ASGI lifespan, the relay command's gRPC
server): connect with the relay token and the versions already held (resume: the upstream sends
only what moved), apply ``snapshot`` / ``keys`` / ``removed`` messages, and reconnect with
exponential backoff (FLAGS_RELAY_BACKOFF_MAX seconds at most, with jitter) whenever the stream
ends. A dropped key is forgotten by the key cache at once, so a revoked SDK key stops working here
as soon as the upstream's key table says so. Each applied update wakes this process's watchers
(flags/live.py), which fan the change out to /ws and gRPC clients exactly as on a primary.

With FLAGS_RELAY_SNAPSHOT_FILE the state is loaded from that file before the first connection
(a relay starts serving with no upstream reachable) and rewritten after every change.
"""

import json
import logging
import random
import threading
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from websockets.sync.client import connect

from relay.state import state

logger = logging.getLogger(__name__)


def stream_url(upstream, since, keys_version):
    parts = urlsplit(upstream)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    query = "since=" + quote(",".join(f"{env}:{version}" for env, version in sorted(since.items())), safe=",:.")
    if keys_version:
        query += "&keys=" + quote(keys_version)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/relay", query, ""))


class Follower:
    def __init__(self):
        self._thread = None
        self._stop = threading.Event()
        self._socket = None
        self._save_due = threading.Event()
        self.synced = threading.Event()
        self.last_error = ""

    def start(self, wait=0.0):
        """Load the snapshot file (if any), start following; wait up to ``wait`` s for the first sync."""
        if self._thread is not None:
            return
        path = getattr(settings, "FLAGS_RELAY_SNAPSHOT_FILE", "")
        if path and not state.ready():
            if state.load(path):
                logger.info("relay: started from snapshot file %s (%d environments)", path, len(state.payloads))
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="relay-follower", daemon=True)
        self._thread.start()
        if path:
            threading.Thread(target=self._saver, args=(path,), name="relay-snapshot-file", daemon=True).start()
        if wait:
            self.synced.wait(wait)

    def stop(self):
        self._stop.set()
        self._save_due.set()
        socket = self._socket
        if socket is not None:
            try:
                socket.close()
            except Exception:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    def _run(self):
        backoff = 0.1
        ceiling = float(getattr(settings, "FLAGS_RELAY_BACKOFF_MAX", 5.0))
        while not self._stop.is_set():
            try:
                self._follow()
                backoff = 0.1  # a stream that ran and ended: reconnect soon
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                if text != self.last_error:
                    logger.warning("relay: upstream %s unavailable (%s); serving the last snapshot", settings.FLAGS_RELAY, text)
                self.last_error = text
            state.mark_connected(False)
            self._stop.wait(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, ceiling)

    def _follow(self):
        url = stream_url(settings.FLAGS_RELAY, state.versions(), state.keys_version)
        with connect(url, additional_headers={"Authorization": f"Bearer {settings.FLAGS_RELAY_TOKEN}"},
                     open_timeout=5, ping_interval=5, ping_timeout=5, close_timeout=1,
                     max_size=64 * 1024 * 1024, compression=None) as socket:
            self._socket = socket
            try:
                for text in socket:
                    self._handle(json.loads(text))
                    if self._stop.is_set():
                        return
            finally:
                self._socket = None

    def _handle(self, message):
        kind = message.get("type")
        state.touch()
        if kind == "snapshot":
            if state.put_payload(message["payload"]):
                self._save_due.set()
        elif kind == "keys":
            gone = state.put_keys(message.get("keys") or (), message.get("version"))
            _forget(gone)
            self._save_due.set()
        elif kind == "hello":
            state.upstream_synced_at = None  # current unless the upstream says otherwise next
        elif kind == "upstream":  # our upstream is a relay: how current its own data is
            state.upstream_synced_at = message.get("syncedAt")
        elif kind == "removed":
            state.drop_environment(message["environment"])
            self._save_due.set()
        elif kind == "synced":
            state.mark_connected(True)
            self.last_error = ""
            self.synced.set()
            logger.info("relay: following %s (%d environments, %d keys)", settings.FLAGS_RELAY,
                        len(state.payloads), len(state.keys))
        elif kind == "error":
            raise RuntimeError(f"upstream refused the stream: {message.get('error')}")

    def _saver(self, path):
        while not self._stop.is_set():
            self._save_due.wait()
            self._save_due.clear()
            if self._stop.is_set():
                break
            try:
                state.save(path)
            except Exception as exc:
                logger.warning("relay: could not write snapshot file %s: %s", path, exc)
            self._stop.wait(0.5)  # at most twice a second, whatever the change rate


def _forget(key_hashes):
    from flagsite.api.authentication import forget_api_key

    for key_hash in key_hashes:
        forget_api_key(key_hash)


follower = Follower()


def wake_watchers(kind, data):
    """A state listener: make this process's watchers look now, not at their next poll."""
    from flags import live

    live.watcher.wake_threadsafe()
    for thread_watcher in list(live.thread_watchers):
        thread_watcher.wake()


state.listeners.append(wake_watchers)
