"""Local evaluation: a live snapshot evaluated in-process by the same engine as the server.

    flags = LocalFeatureFlagClient(base_url="http://localhost:3001/api", api_key="sdk_...")
    flags.start()                                  # loads the snapshot, then follows the WebSocket
    flags.is_enabled("new-checkout", "user-123", {"country": "US"})

The snapshot is replaced whenever the server announces a newer version (WebSocket, or a poll every
``poll_interval`` seconds as a fallback). If the server becomes unreachable the last good snapshot
keeps answering. Evaluation counts, and the exposures experiments need (which user was handed
which variant, first and last), are reported back in batches for the server's analytics.
"""

import logging
import threading
import time
from collections import Counter
from urllib.parse import urlsplit, urlunsplit

from .client import FeatureFlagClient
from .engine import compile_snapshot
from .engine.exposures import ExposureTable
from .errors import FlagsiteError
from .websocket import WebSocketClient

log = logging.getLogger("feature_flag_client.local")


def websocket_url(base_url):
    """ws(s)://host/ws for an API base URL http(s)://host/api."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/")
    path = (path[: -len("/api")] if path.endswith("/api") else path) + "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class LocalEvaluator:
    """Evaluation over a snapshot payload ({environment, version, flags, segments}).

    Every evaluation is counted by the engine itself (a counting snapshot: exact, ~30 ns), and
    ``take_counts()`` returns what was evaluated since the last call. Each variant handed to a known
    user is an exposure (the server's experiments count users by them): ``take_exposures()`` returns
    them, deduplicated, at most ``max_exposures`` new users between two takes (past that they are
    counted in ``exposures.dropped``).
    """

    MAX_EXPOSURES = 10_000  # per report: the server's limit (analytics/apis.py MAX_REPORTED_EXPOSURES)

    def __init__(self, payload=None, *, max_exposures=MAX_EXPOSURES):
        self.exposures = ExposureTable(max_pending=max_exposures)
        self.snapshot = compile_snapshot(counting=True, on_variant=self._exposed)
        self.evaluate = self.snapshot.evaluate
        self._reported = Counter()  # hit counts of the current snapshot already taken
        self._pending = Counter()  # untaken counts of snapshots replaced since
        self._counts_lock = threading.Lock()
        self._experiments = None  # the payload's {flag: start} of running experiments
        if payload is not None:
            self.load(payload)

    @property
    def version(self):
        return self.snapshot.version

    def load(self, payload):
        snapshot = compile_snapshot(payload.get("flags", ()), payload.get("segments"), payload.get("environment"),
                                    payload.get("version"), counting=True, on_variant=self._exposed)
        with self._counts_lock:
            old, self.snapshot = self.snapshot, snapshot
            # evaluate(flag_id, user_id=None, context=None) -> Evaluation: the counting snapshot's
            # own function, bound here so an evaluation costs no extra Python call.
            self.evaluate = snapshot.evaluate
            self._pending.update(old.hit_counts() - self._reported)
            self._reported = Counter()
        # an experiment started or stopped: users seen before are exposures again from now on
        if payload.get("experiments") != self._experiments:
            self._experiments = payload.get("experiments")
            self.exposures.restart()

    def evaluate_flag(self, flag_id, user_id=None, context=None):
        """The same dict the REST API answers."""
        return self.evaluate(flag_id, user_id, context).as_dict()

    def is_enabled(self, flag_id, user_id=None, context=None):
        return self.evaluate(flag_id, user_id, context).enabled

    def variant(self, flag_id, user_id=None, context=None):
        return self.evaluate(flag_id, user_id, context).variant

    def explain(self, flag_id, user_id=None, context=None):
        """Why this flag answers what it does for this user, from the local snapshot: the same
        shape as the server's POST /api/flags/{key}/explain, with this snapshot's environment only:
        {"flagId", "userId", "environments": {env: {...evaluation, "decidingRule", "summary",
        "rules": [{"path", "matched", "attribute", "value", "message", ...}]}}}. Not counted as an
        evaluation; costs a compile of the one flag (tens of microseconds), so keep it off hot paths."""
        snapshot = self.snapshot
        explanation = snapshot.explain(flag_id, user_id, context)
        shown = user_id if user_id is None or isinstance(user_id, str) else str(user_id)
        return {"flagId": flag_id, "userId": shown,
                "environments": {snapshot.environment: explanation.as_dict()}}

    def take_counts(self):
        """{(flag_id, variant, enabled): evaluations} since the last call."""
        with self._counts_lock:
            current = self.snapshot.hit_counts()
            counts = self._pending + (current - self._reported)
            self._reported = current
            self._pending = Counter()
        return counts

    def give_back_counts(self, counts):
        """Counts a failed report could not deliver: taken again next time."""
        with self._counts_lock:
            self._pending.update(counts)

    def _exposed(self, evaluation, user_id):
        key = (evaluation.environment, evaluation.flag_id, user_id)
        if self.exposures.seen.get(key) != evaluation.variant:  # else seen in it this hour: no clock read
            self.exposures.see(*key, evaluation.variant, int(time.time()))

    def take_exposures(self):
        """[{flagId, userId, variant, lastVariant, firstSeen, lastSeen, changes}] since the last call:
        the first and last variant each user was handed (epoch seconds), and how often it changed.
        Last seen has hour resolution: users seen again in the same variant are checked against the
        hour's table without a clock read, and each take starts it over once the hour changed."""
        self.exposures.roll(int(time.time()))
        return [{"flagId": flag_id, "userId": user_id, "variant": first, "lastVariant": last,
                 "firstSeen": first_seen, "lastSeen": last_seen, "changes": changes}
                for _, flag_id, user_id, first, last, first_seen, last_seen, changes in self.exposures.take()]

    def give_back_exposures(self, exposures):
        """Exposures a failed report could not deliver: taken again next time."""
        environment = self.snapshot.environment
        self.exposures.keep([(environment, e["flagId"], e["userId"], e["variant"], e["lastVariant"],
                               e["firstSeen"], e["lastSeen"], e["changes"]) for e in exposures], first=True)


class LocalFeatureFlagClient(LocalEvaluator):
    def __init__(self, base_url="http://localhost:3001/api", api_key=None, *, environment=None,
                 ws_url=None, poll_interval=30.0, report_interval=10.0, client=None):
        super().__init__()
        self.client = client or FeatureFlagClient(base_url, api_key, environment=environment)
        self.environment = environment
        self.poll_interval = poll_interval
        self.report_interval = report_interval
        self.etag = None
        self.ready = threading.Event()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.websocket = WebSocketClient(ws_url or websocket_url(self.client.base_url),
                                         self.client.api_key, daemon=True)
        self.websocket.on_message(self._on_message)

    def start(self, wait=True):
        """Load the snapshot (raises if the first load fails and wait is True), then follow changes."""
        if wait:
            self.refresh()
        for target in (self._poll, self._report):
            thread = threading.Thread(target=target, daemon=True, name=f"flagsite-{target.__name__}")
            thread.start()
            self._threads.append(thread)
        self.websocket.version = self.version
        self.websocket.connect()
        return self

    def close(self):
        self._stop.set()
        self.websocket.close()
        self.report()
        self.client.close()  # sends the tracked events still queued

    def track(self, event, user_id, value=None, properties=None, timestamp=None):
        """Record an event for experiment metrics: see FeatureFlagClient.track (same queue)."""
        return self.client.track(event, user_id, value, properties, timestamp)

    def flush_events(self):
        return self.client.flush_events()

    def refresh(self):
        """Fetch the snapshot if it changed (ETag). Returns True when a new one was loaded."""
        with self._refresh_lock:
            payload, etag = self.client.get_snapshot(self.environment, self.etag)
            if payload is None:
                return False
            self.load(payload)
            self.etag = etag
            self.ready.set()
            return True

    def _on_message(self, data):
        version = data.get("version")
        if data.get("type") == "snapshot" and "flags" in data:
            self.load(data)
            self.ready.set()
        elif isinstance(version, int) and (self.version is None or version > self.version):
            self._safe_refresh()

    def _safe_refresh(self):
        try:
            self.refresh()
        except FlagsiteError as exc:  # keep serving the last good snapshot
            log.warning("flagsite snapshot refresh failed, serving version %s: %s", self.version, exc)

    def _poll(self):
        while not self._stop.wait(self.poll_interval):
            self._safe_refresh()

    def _report(self):
        while not self._stop.wait(self.report_interval):
            self.report()

    def report(self):
        """Send the evaluation counts and exposures gathered since the last report (kept on failure)."""
        counts, exposures = self.take_counts(), self.take_exposures()
        if not counts and not exposures:
            return
        batch = [{"flagId": flag, "variant": variant, "enabled": enabled, "count": count}
                 for (flag, variant, enabled), count in counts.items()]
        try:
            self.client.request("POST", "/sdk/metrics", json={"evaluations": batch, "exposures": exposures},
                                params=self.client._params(self.environment))
        except FlagsiteError as exc:
            log.debug("flagsite metrics report failed, keeping counts and exposures: %s", exc)
            self.give_back_counts(counts)
            self.give_back_exposures(exposures)
