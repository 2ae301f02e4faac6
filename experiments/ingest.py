"""Validating a batch of tracked events, for every interface that takes them (REST POST
/api/events, gRPC Track): one set of rules, one set of field paths (``events[3].event``)."""

import math
import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.utils.dateparse import parse_datetime

from flags.errors import ValidationFailed

MAX_NAME = 128
MAX_USER = 256
MAX_ID = 128
FUTURE_SLACK = 24 * 3600  # a client clock may run ahead a little; a day ahead is a bug


class TooManyEvents(Exception):
    """More events in one batch than FLAGS_EVENTS_MAX_BATCH (REST 413, gRPC INVALID_ARGUMENT)."""

    def __init__(self, count):
        self.message = (f"At most {settings.FLAGS_EVENTS_MAX_BATCH} events per batch (FLAGS_EVENTS_MAX_BATCH); "
                        f"this one has {count}.")
        super().__init__(self.message)


def parse_events(data, environment, now=None):
    """``{"events": [...]}`` -> rows for experiments.buffers.EventBuffer.add (see
    experiments.services.events_write for their shape). Raises ValidationFailed with a path per
    bad field, TooManyEvents past the batch limit."""
    if not isinstance(data, dict):
        raise ValidationFailed(fields={"": ["Expected a JSON object with 'events'."]})
    events = data.get("events")
    if not isinstance(events, list):
        raise ValidationFailed(fields={"events": ["Expected a list of events."]})
    if len(events) > settings.FLAGS_EVENTS_MAX_BATCH:
        raise TooManyEvents(len(events))
    now = datetime.now(UTC).timestamp() if now is None else now
    errors, rows = {}, []
    for index, item in enumerate(events):
        path = f"events[{index}]"
        if not isinstance(item, dict):
            errors[path] = ["Expected an object."]
            continue
        row = _row(item, path, errors, environment, now)
        if row is not None:
            rows.append(row)
    if errors:
        raise ValidationFailed(fields=errors)
    return rows


def _row(item, path, errors, environment, now):
    bad = len(errors)
    name = item.get("event")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        errors[f"{path}.event"] = [f"An event name is required (1-{MAX_NAME} characters)."]
    user_id = item.get("userId")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER:
        errors[f"{path}.userId"] = [f"A user id is required (a string of 1-{MAX_USER} characters)."]
    value = item.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or abs(value) > 1e15):
        errors[f"{path}.value"] = ["Expected a finite number or null."]
    timestamp = _timestamp(item.get("timestamp"), now)
    if timestamp is None:
        errors[f"{path}.timestamp"] = ["Expected an ISO 8601 date-time (or epoch seconds), not a day or more ahead."]
    properties = item.get("properties")
    if properties is not None and not isinstance(properties, dict):
        errors[f"{path}.properties"] = ["Expected a JSON object or null."]
    client_id = item.get("id")
    if client_id is None:
        client_id = uuid.uuid4().hex  # no id: this event cannot be deduplicated
    elif not isinstance(client_id, str) or not client_id or len(client_id) > MAX_ID:
        errors[f"{path}.id"] = [f"Expected a string of 1-{MAX_ID} characters (unique per event) or null."]
    if len(errors) != bad:
        return None
    return [environment, name, user_id, None if value is None else float(value), timestamp, properties or {},
            client_id, now]


def _timestamp(raw, now):
    """Epoch seconds, or None when invalid. Absent: now."""
    if raw is None:
        return now
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        seconds = float(raw)
        if not math.isfinite(seconds) or seconds < 0:
            return None
    elif isinstance(raw, str) and len(raw) <= 64:
        try:
            parsed = parse_datetime(raw)
        except ValueError:
            return None
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = parsed.timestamp()
    else:
        return None
    return seconds if seconds <= now + FUTURE_SLACK else None
