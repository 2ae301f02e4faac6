"""Structured logs: one JSON object per line, with the request id of the request being served.

LOGGING in settings uses ``JsonFormatter`` when ``LOG_FORMAT=json`` (the default outside DEBUG)."""

import json
import logging
import time

from flagsite.ops.requestid import request_id_var

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id", "request"}


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (empty outside a request) so any formatter can print it."""

    def filter(self, record):
        if not getattr(record, "request_id", None):
            request = getattr(record, "request", None)  # django.request logs after the middleware returned
            meta = getattr(request, "META", None)
            record.request_id = request_id_var.get() or (meta.get("HTTP_X_REQUEST_ID", "") if meta else "")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if not request_id:
            RequestIdFilter().filter(record)
            request_id = record.request_id
        if request_id:
            entry["request_id"] = request_id
        for name, value in vars(record).items():  # extra={...} fields
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class QuietRefusals(logging.Filter):
    """Drops django.request's line for 401 and 429 answers: a flood of bad keys would otherwise
    write a log line per request. The refusals are logged where they are decided instead
    (authentication: each unknown key until its address is blocked, then one line; throttling)."""

    QUIET = {401, 429}

    def filter(self, record):
        return getattr(record, "status_code", None) not in self.QUIET
