"""Checkpoints leave the database: a JSON-lines file, the log, a webhook (a local server here);
Celery beat makes them periodically; the audit key is kept outside the database."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import signing
from audit.checkpoints import sign
from audit.keyfile import AuditKeyError, load_audit_key
from audit.models import AuditEntry
from tests.ops.conftest import production_env, run
from tests.servers import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    """A webhook receiver on 127.0.0.1 that records what is POSTed."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/audit", received
    server.shutdown()
    server.server_close()


def test_audit_checkpoint__file_log_and_webhook_get_the_same_signed_record(flag, checkpoint_file, settings,
                                                                            receiver, caplog):
    url, received = receiver
    settings.FLAGS_AUDIT_CHECKPOINT_WEBHOOK = url
    newest = AuditEntry.objects.order_by("-id").first()
    with caplog.at_level(logging.INFO, logger="flagsite.audit.checkpoint"):
        call_command("audit_checkpoint", stdout=open("/dev/null", "w"))

    record = json.loads(checkpoint_file.read_text())
    assert (record["entry"], record["hash"], record["count"]) == (newest.pk, newest.hash, AuditEntry.objects.count())
    assert record["key"] == signing.key_id() and record["mac"] == sign(record)
    assert received == [("/hooks/audit", "application/json", record)]
    assert [json.loads(r.getMessage().split(" ", 2)[2]) for r in caplog.records] == [record]
    assert oct(checkpoint_file.stat().st_mode & 0o777) == "0o600"


def test_audit_checkpoint__webhook_down__non_zero_one_line_and_the_file_still_written(flag, checkpoint_file, settings):
    port = free_port()  # nothing listens there
    settings.FLAGS_AUDIT_CHECKPOINT_WEBHOOK = f"http://127.0.0.1:{port}/"

    with pytest.raises(CommandError, match=r"^checkpoint not exported to webhook: .*refused"):
        call_command("audit_checkpoint", stdout=open("/dev/null", "w"))
    assert len(checkpoint_file.read_text().splitlines()) == 1


def test_audit_checkpoint__appends(flag, checkpoint_file):
    for _ in range(3):
        call_command("audit_checkpoint", stdout=open("/dev/null", "w"))
    assert len(checkpoint_file.read_text().splitlines()) == 3


def test_beat__runs_the_checkpoint_task_periodically(flag, checkpoint_file):
    from audit.tasks import checkpoint
    from flagsite.celery import app

    entry = app.conf.beat_schedule["audit-checkpoint"]
    assert entry["task"] == checkpoint.name == "audit.checkpoint" and entry["schedule"] == 600
    result = checkpoint.apply().get()
    assert result["errors"] == [] and json.loads(checkpoint_file.read_text()) == result["checkpoint"]


# -- the key ---------------------------------------------------------------------------------------

def test_production__refuses_to_start_without_an_audit_key():
    result = run(["manage.py", "check"], production_env(FLAGS_AUDIT_KEY=None, FLAGS_AUDIT_KEY_FILE=None))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1
    assert lines[0].startswith("flagsite: refusing to start: set FLAGS_AUDIT_KEY")


def test_production__starts_with_a_key_file(tmp_path):
    (tmp_path / "audit.key").write_text("k" * 40 + "\n")
    result = run(["manage.py", "check"], production_env(FLAGS_AUDIT_KEY=None, FLAGS_AUDIT_KEY_FILE=str(tmp_path / "audit.key")))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("environ, message", [
    ({"FLAGS_AUDIT_KEY": "short"}, "FLAGS_AUDIT_KEY must be 32+"),
    ({"FLAGS_AUDIT_KEY_FILE": "/nonexistent/audit.key"}, "cannot read FLAGS_AUDIT_KEY_FILE /nonexistent/audit.key"),
    ({"FLAGS_AUDIT_KEY": "k" * 40, "FLAGS_AUDIT_KEY_FILE": "/x"}, "not both"),
])
def test_key__bad_settings__one_line_reason(environ, message, tmp_path):
    with pytest.raises(AuditKeyError, match=message):
        load_audit_key(environ, production=False, default_path=tmp_path / "audit.key")


def test_key__embedded__generated_once_private_and_reused(tmp_path):
    path = tmp_path / "artifacts" / "audit.key"
    first = load_audit_key({}, production=False, default_path=path)
    assert len(first) >= 32 and oct(path.stat().st_mode & 0o777) == "0o600"
    assert load_audit_key({}, production=False, default_path=path) == first
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
