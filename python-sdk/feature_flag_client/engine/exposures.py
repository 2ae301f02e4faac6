"""Exposures waiting to be sent: who was handed which variant, first and last, deduplicated.

One table for the server (experiments/buffers.py, fed by every REST, OFREP and gRPC evaluation)
and the SDK's local mode (feature_flag_client.local, fed by the counting snapshot), so both report
the same rows: ``[environment, flag, user, first variant, last variant, first seen, last seen,
variant changes]`` (seconds since the epoch), which the server upserts into its exposures table.

``see`` is the hot path: a user already seen in the same variant this hour costs a tuple, one dict
lookup and two compares; anything new goes into the batch under a lock. The table of users seen
starts over every hour (so ``last seen`` has hour resolution) and when it holds ``max_seen``
keys (a repeat is harmless: the server's upsert merges it). ``max_pending`` bounds the batch
between two ``take`` calls; past it, new users are counted in ``dropped`` and not kept.

``restart`` is called when the experiments running on the snapshot's flags change (the snapshot
payload's ``experiments``: the server's flags/snapshot.py reload hook, the SDK's ``load``): the
table of users seen starts over, so a user evaluated right after an experiment starts is reported
at once whatever happened before, and the rows gathered so far are set apart, so no row spans the
start (a row first seen before it belongs to the flag, not the experiment). Rows set apart
(``keep``: a restart, a batch given back, an SDK's report on the server) are sent as they are, in
order, before the current batch: the server's upsert applies rows of one user oldest first.
"""

import threading


class ExposureTable:
    max_seen = 100_000
    max_pending = None

    def __init__(self, max_seen=None, max_pending=None):
        if max_seen is not None:
            self.max_seen = max_seen
        if max_pending is not None:
            self.max_pending = max_pending
        self.reset()

    def reset(self):
        self._lock = threading.Lock()
        self.seen = {}  # (environment, flag, user) -> variant, seen this hour
        self._hour = None
        self._batch = {}  # (environment, flag, user) -> [first variant, last variant, first s, last s, changes]
        self._kept = []  # rows set apart (restart, keep), sent before the batch, never merged into it
        self.dropped = 0

    def see(self, environment, flag_id, user_id, variant, second):
        """One evaluation that handed ``user_id`` the (on) ``variant`` at ``second``."""
        key = (environment, flag_id, user_id)
        if self.seen.get(key) == variant and second // 3600 == self._hour:
            return
        with self._lock:
            hour = second // 3600
            seen = self.seen
            if hour != self._hour or len(seen) >= self.max_seen:
                seen.clear()  # a new hour: everyone's last seen moves on once more
                self._hour = hour
            seen[key] = variant
            row = self._batch.get(key)
            if row is None:
                if self.max_pending is not None and len(self._batch) + len(self._kept) >= self.max_pending:
                    self.dropped += 1
                    del seen[key]  # not kept: seen again, it is tried again
                    return
                self._batch[key] = [variant, variant, second, second, 0]
            else:
                if row[1] != variant:
                    row[4] += 1
                row[1], row[3] = variant, second

    def roll(self, second):
        """Start the table of users seen over when the hour changed (for callers whose hot path
        checks ``seen`` without a clock, as the SDK's local mode does)."""
        if second // 3600 != self._hour:
            with self._lock:
                self.seen.clear()
                self._hour = second // 3600

    def restart(self):
        """The experiments on these flags changed: forget the users seen (each is reported again at
        its next evaluation) and set the rows gathered so far apart from the ones to come."""
        with self._lock:
            self.seen.clear()
            self._kept.extend([*key, *row] for key, row in self._batch.items())
            self._batch = {}

    def keep(self, rows, first=False):
        """Rows to send as they are (not merged with others): a batch that failed to send
        (``first``: older than anything gathered since), an SDK's report on the server."""
        rows = [list(row) for row in rows]
        with self._lock:
            self._kept = rows + self._kept if first else self._kept + rows

    def merge(self, rows):
        """Add rows gathered elsewhere (an SDK's report, a batch that failed to send), oldest first."""
        with self._lock:
            batch = self._batch
            for environment, flag_id, user_id, first, last, first_seen, last_seen, changes in rows:
                key = (environment, flag_id, user_id)
                row = batch.get(key)
                if row is None:
                    batch[key] = [first, last, first_seen, last_seen, changes]
                    continue
                changes += row[4] + (row[1] != first)
                if first_seen < row[2]:
                    row[0], row[2] = first, first_seen
                if last_seen >= row[3]:
                    row[1], row[3] = last, last_seen
                row[4] = changes

    def take(self):
        """The rows gathered since the last take (and forget them)."""
        with self._lock:
            taken, self._batch = self._batch, {}
            kept, self._kept = self._kept, []
        return kept + [[*key, *row] for key, row in taken.items()]

    def __len__(self):
        return len(self._batch) + len(self._kept)
