"""What a relay holds (relay mode, settings.FLAGS_RELAY): the snapshot payloads of the environments
its token allows and the key hashes the upstream shares, both followed from the upstream's
/ws/relay stream (relay/follower.py). This module is the relay's snapshot source and key source:
flags/snapshot.py, flags/live.py and flagsite/api/authentication.py read it instead of the ORM in
relay mode, and everything above them (views, fast lane, OFREP, gRPC, /ws fan-out) is unchanged.

No I/O here except the optional snapshot file (``save``/``load``), written by the follower thread.
"""

import json
import logging
import os
import tempfile
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)


def enabled():
    return bool(getattr(settings, "FLAGS_RELAY", ""))


class RelayState:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self):
        with self._lock:
            self.payloads = {}  # environment ref -> snapshot payload (as /api/sdk/snapshot serves it)
            self.keys = {}  # key hash -> {"kind", "id", "prefix", "environment", "project", "environments"}
            self.keys_version = None
            self.connected = False
            self.synced_at = None  # time.time() of the last message from a live upstream connection
            self.disconnected_at = time.time()
            self.loaded_from_file = False
            # a chain: when our upstream is itself a relay that lost its upstream, the time it last
            # heard from it (what our clients' answers are as old as); None while it is current
            self.upstream_synced_at = None
            self.listeners = []  # callables(kind, data) called after an update (the watchers' wake-up)

    # -- reads (request threads: plain dict reads, no lock) ----------------------------------------

    def version(self, environment):
        payload = self.payloads.get(environment)
        return None if payload is None else payload["version"]

    def versions(self):
        return {environment: payload["version"] for environment, payload in list(self.payloads.items())}

    def payload(self, environment):
        return self.payloads.get(environment)

    def key(self, key_hash):
        return self.keys.get(key_hash)

    def ready(self):
        return bool(self.payloads) or self.keys_version is not None

    def age(self):
        """Seconds since this relay (or, in a chain, the first relay up the chain that lost its
        upstream) last heard from its upstream; 0 while the whole chain is connected."""
        if self.connected:
            since = self.upstream_synced_at
            return 0.0 if since is None else max(0.0, time.time() - since)
        since = self.synced_at or self.disconnected_at
        if self.upstream_synced_at is not None:
            since = min(since, self.upstream_synced_at)
        return max(0.0, time.time() - since)

    def last_synced_at(self):
        """Wall-clock time the data here was last known current (None: it is current now)."""
        if self.connected and self.upstream_synced_at is None:
            return None
        since = self.synced_at or self.disconnected_at
        return since if self.upstream_synced_at is None else min(since, self.upstream_synced_at)

    def stale(self):
        return self.age() >= getattr(settings, "FLAGS_RELAY_STALE_SECONDS", 5.0)

    # -- writes (the follower thread) ----------------------------------------------------------------

    def put_payload(self, payload):
        environment = payload["environment"]
        with self._lock:
            known = self.payloads.get(environment)
            if known is not None and known["version"] == payload["version"] and known == payload:
                return False
            self.payloads[environment] = payload
        self._notify("snapshot", environment)
        return True

    def drop_environment(self, environment):
        with self._lock:
            dropped = self.payloads.pop(environment, None) is not None
        if dropped:
            self._notify("snapshot", environment)

    def put_keys(self, keys, version=None):
        """Replace the key table; returns the hashes whose entry changed: gone (revoked or deleted),
        new (a key cache may remember them as unknown) or altered."""
        table = {entry["hash"]: {k: v for k, v in entry.items() if k != "hash"} for entry in keys}
        with self._lock:
            gone = [key_hash for key_hash in self.keys.keys() | table.keys()
                    if self.keys.get(key_hash) != table.get(key_hash)]
            self.keys = table
            self.keys_version = version
        self._notify("keys", gone)
        return gone

    def mark_connected(self, connected):
        with self._lock:
            if connected:
                self.synced_at = time.time()
            elif self.connected:
                self.disconnected_at = time.time()
            self.connected = connected

    def touch(self):
        self.synced_at = time.time()

    def _notify(self, kind, data):
        for listener in list(self.listeners):
            try:
                listener(kind, data)
            except Exception:
                logger.exception("relay state listener failed")

    # -- the snapshot file ---------------------------------------------------------------------------

    def dump(self):
        return {"format": "flagsite-relay-snapshot/1", "upstream": getattr(settings, "FLAGS_RELAY", ""),
                "savedAt": time.time(), "snapshots": list(self.payloads.values()),
                "keys": [{"hash": key_hash, **entry} for key_hash, entry in self.keys.items()],
                "keysVersion": self.keys_version}

    def save(self, path):
        """Write the file atomically (a crash mid-write leaves the previous one)."""
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".relay-snapshot-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(self.dump(), out, separators=(",", ":"))
            os.replace(tmp, path)
        except Exception:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load(self, path):
        """Start from a snapshot file (the upstream may be unreachable at start-up); False when
        there is none. A file that is not a relay snapshot raises ValueError (refuse to start)."""
        try:
            with open(path) as src:
                data = json.load(src)
        except FileNotFoundError:
            return False
        if not isinstance(data, dict) or data.get("format") != "flagsite-relay-snapshot/1":
            raise ValueError(f"{path} is not a relay snapshot file")
        for payload in data.get("snapshots") or ():
            self.put_payload(payload)
        self.put_keys(data.get("keys") or (), data.get("keysVersion"))
        with self._lock:
            self.loaded_from_file = True
            self.synced_at = data.get("savedAt") or None
            self.disconnected_at = self.synced_at or time.time()
        return True


state = RelayState()
