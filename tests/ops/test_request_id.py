"""Request ids: honoured or generated, returned, stored in audit entries, printed in JSON logs."""

import io
import json
import logging
import re

import pytest

from audit.models import AuditEntry
from flagsite.ops.logging import JsonFormatter, RequestIdFilter
from tests.ops.conftest import Client, create_flag

pytestmark = pytest.mark.django_db


def test_request_id__honoured_and_returned(anon):
    response = anon.get("/api/health", HTTP_X_REQUEST_ID="trace-abc.123")
    assert response["X-Request-ID"] == "trace-abc.123"


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 65, "bad\nline", "<script>"])
def test_request_id__generated_when_missing_or_unsafe(anon, given):
    extra = {} if given is None else {"HTTP_X_REQUEST_ID": given}
    response = anon.get("/api/health", **extra)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_request_id__lands_in_audit_entry(editor_api):
    create_flag("f", states={"production": {"enabled": False}})
    response = editor_api.patch("/api/flags/f/toggle?environment=production", {"enabled": True},
                                HTTP_X_REQUEST_ID="req-from-gateway-7")
    assert response.status_code == 200
    entry = AuditEntry.objects.latest("pk")
    assert entry.request_id == "req-from-gateway-7"
    generated = editor_api.patch("/api/flags/f/toggle?environment=production", {"enabled": False})
    assert AuditEntry.objects.latest("pk").request_id == generated["X-Request-ID"]


def test_json_logs__one_object_a_line_with_the_request_id(keys):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("flagsite.api.authentication")
    logger.addHandler(handler)
    try:
        Client("not-a-key").post("/api/evaluate", {"flagId": "f"}, HTTP_X_REQUEST_ID="trace-json-1")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "trace-json-1"
    assert line["level"] == "WARNING" and line["logger"] == "flagsite.api.authentication"
    assert line["message"].startswith("authentication failed") and "not-a-key" not in line["message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


def test_json_formatter__extra_fields_and_exceptions():
    record = logging.makeLogRecord({"name": "x", "levelname": "ERROR", "msg": "boom %s", "args": (1,), "flag": "f"})
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "boom 1" and line["flag"] == "f" and "ValueError: bad" in line["exc_info"]
    assert "request_id" not in line  # outside a request
