"""/api/relay/ingest: what relays counted, in batches named by an id so a retried batch counts once.

A batch is ``{"batch": id, "counts": <analytics.counters.Recorder.collect() batch> | null,
"events": [event rows], "exposures": [exposure rows]}``: exactly what the relay's own buffers
would have handed to their Celery tasks (analytics/counters.py, experiments/buffers.py). A
primary applies it with the same services those tasks call, in one transaction with the batch's
id (flags.RelayBatch), so a retry after a lost answer is refused as a duplicate; a relay serving a
relay of its own remembers recent ids in memory and forwards the rows through its own outbox.
"""

import base64
import binascii
import re
import threading
from collections import OrderedDict

from django.db import IntegrityError, transaction

from flags.errors import ValidationFailed
from relay import state as relay_state

BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_ROWS = 50_000
_seen = OrderedDict()  # relay mode: recent batch ids (a relay's memory of what it forwarded)
_seen_lock = threading.Lock()
SEEN_MAX = 100_000


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_rows(fields, name, rows, width, check):
    if rows is None:
        return []
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        fields[name] = [f"A list of at most {MAX_ROWS} rows."]
        return []
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width or not check(row):
            fields[name] = [f"Row {index} is not a valid {name} row."]
            return []
    return rows


def _counts_row(row):
    env, flag, variant, enabled, hour, n = row
    return (isinstance(env, str) and isinstance(flag, str) and (variant is None or isinstance(variant, str))
            and isinstance(enabled, bool) and _int(hour) and 0 <= hour < 10**7 and _int(n) and 0 < n < 10**12)


def _users_row(row):
    env, flag, hour, data = row
    if not (isinstance(env, str) and isinstance(flag, str) and _int(hour) and isinstance(data, str)):
        return False
    try:
        from analytics.hll import HyperLogLog

        HyperLogLog.from_bytes(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, TypeError, IndexError):
        return False
    return True


def _event_row(row):
    env, event, user_id, value, timestamp, properties, client_id, received = row
    return (isinstance(env, str) and isinstance(event, str) and isinstance(user_id, str)
            and (value is None or _number(value)) and _number(timestamp) and _number(received)
            and (properties is None or isinstance(properties, dict)) and (client_id is None or isinstance(client_id, str)))


def _exposure_row(row):
    env, flag, user, first, last, first_s, last_s, changes = row
    return (isinstance(env, str) and isinstance(flag, str) and isinstance(user, str)
            and (first is None or isinstance(first, str)) and (last is None or isinstance(last, str))
            and _number(first_s) and _number(last_s) and _int(changes))


def parse(data, allowed):
    """The validated batch, or ValidationFailed (400) / PermissionError (an environment the token
    may not write: 403)."""
    fields = {}
    if not isinstance(data, dict):
        raise ValidationFailed(message="The body must be a JSON object.")
    unknown = set(data) - {"batch", "counts", "events", "exposures"}
    if unknown:
        fields.update({name: ["Unknown field."] for name in sorted(unknown)})
    batch_id = data.get("batch")
    if not isinstance(batch_id, str) or not BATCH_ID.match(batch_id):
        fields["batch"] = ["A batch id: 8-64 letters, digits, '-' or '_' (the same on every retry)."]
    counts = data.get("counts")
    if counts is not None and not (isinstance(counts, dict) and set(counts) <= {"counts", "users"}):
        fields["counts"] = ["An object with 'counts' and 'users' rows."]
        counts = None
    if counts is not None:
        counts = {"counts": _check_rows(fields, "counts", counts.get("counts") or [], 6, _counts_row),
                  "users": _check_rows(fields, "users", counts.get("users") or [], 4, _users_row)}
    events = _check_rows(fields, "events", data.get("events"), 8, _event_row)
    exposures = _check_rows(fields, "exposures", data.get("exposures"), 8, _exposure_row)
    if fields:
        raise ValidationFailed(fields)
    touched = {row[0] for row in (counts or {}).get("counts", ())} | {row[0] for row in (counts or {}).get("users", ())}
    touched |= {row[0] for row in events} | {row[0] for row in exposures}
    refused = sorted(touched - set(allowed))
    if refused:
        raise PermissionError(f"This relay token may not write environment(s): {', '.join(refused)}.")
    return {"batch": batch_id, "counts": counts if counts and (counts["counts"] or counts["users"]) else None,
            "events": events, "exposures": exposures}


def apply(batch, relay_key_id=None):
    """Apply once; returns False when the batch id was seen before (a retry)."""
    if relay_state.enabled():
        return _forward(batch)
    from analytics.services import rollup_apply
    from experiments.services import events_write, exposures_upsert
    from flags.models import RelayBatch

    try:
        with transaction.atomic():
            RelayBatch.objects.create(batch_id=batch["batch"], relay_key_id=relay_key_id)
            if batch["counts"]:
                rollup_apply(batch=batch["counts"])
            if batch["events"]:
                events_write(rows=batch["events"])
            if batch["exposures"]:
                exposures_upsert(rows=batch["exposures"])
    except IntegrityError:
        if RelayBatch.objects.filter(batch_id=batch["batch"]).exists():
            return False
        raise
    return True


def _forward(batch):
    from relay.outbox import outbox

    with _seen_lock:
        if batch["batch"] in _seen:
            return False
        _seen[batch["batch"]] = True
        while len(_seen) > SEEN_MAX:
            _seen.popitem(last=False)
    outbox.put_batch({"counts": batch["counts"], "events": batch["events"], "exposures": batch["exposures"]})
    return True
