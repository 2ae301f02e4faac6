"""Signed checkpoints: (newest entry id, its hash, entry count, time), HMAC'd under the audit key
and exported off the database: appended to a JSON-lines file, logged, and POSTed to a webhook.
A later truncation or rewrite below a checkpoint no longer matches it (audit.chain.verify_chain).
"""

import datetime as dt
import fcntl
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from django.conf import settings

from audit import signing
from audit.models import AuditEntry
from audit.services import GENESIS_HASH

logger = logging.getLogger("flagsite.audit.checkpoint")
SIGNED_FIELDS = ("v", "entry", "hash", "count", "at", "key")
WEBHOOK_TIMEOUT_SECONDS = 3


def sign(record, key=None):
    return signing.mac("checkpoint", signing.canonical_json({f: record.get(f) for f in SIGNED_FIELDS}), key)


def make_checkpoint():
    newest = AuditEntry.objects.order_by("-id").values("id", "hash").first()
    record = {
        "v": 1,
        "entry": newest["id"] if newest else None,
        "hash": newest["hash"] if newest else GENESIS_HASH,
        # writers extend the chain one at a time in id order, so this count is the chain's length
        "count": AuditEntry.objects.filter(id__lte=newest["id"]).count() if newest else 0,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "key": signing.key_id(),
    }
    record["mac"] = sign(record)
    return record


@dataclass
class Exported:
    record: dict
    file: str = ""
    webhook_status: int | None = None
    errors: list = field(default_factory=list)


def append_to_file(path, record):
    """One line per checkpoint, appended under an exclusive lock (beat and the command may race)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        out.write(json.dumps(record, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())


def post_to_webhook(url, record):
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook URL must be http(s): {url!r}")
    request = urllib.request.Request(url, data=json.dumps(record).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only
        return response.status


def export_checkpoint(*, file=None, webhook=None):
    """Make a checkpoint and send it everywhere configured. A failing destination is logged and
    reported, and does not stop the others."""
    file = settings.FLAGS_AUDIT_CHECKPOINT_FILE if file is None else file
    webhook = settings.FLAGS_AUDIT_CHECKPOINT_WEBHOOK if webhook is None else webhook
    result = Exported(make_checkpoint())
    logger.info("audit checkpoint %s", json.dumps(result.record, sort_keys=True))
    if file:
        try:
            append_to_file(file, result.record)
            result.file = file
        except OSError as exc:
            result.errors.append(f"file {file}: {exc.strerror or exc}")
    if webhook:
        try:
            result.webhook_status = post_to_webhook(webhook, result.record)
        except (OSError, ValueError, urllib.error.URLError) as exc:
            result.errors.append(f"webhook: {getattr(exc, 'reason', None) or exc}")
    for error in result.errors:
        logger.error("audit checkpoint not exported to %s", error)
    return result


class CheckpointFileError(Exception):
    pass


def read_checkpoints(path, key=None):
    """[(line number, record)] of a checkpoint file, every signature checked. Raises
    CheckpointFileError with a one-line reason for a missing/empty file or a bad line."""
    try:
        with open(path) as lines:
            text = lines.read()
    except OSError as exc:
        raise CheckpointFileError(f"cannot read checkpoint file {path}: {exc.strerror}") from None
    records = []
    expected_key = signing.key_id(key)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            entry = record["entry"]
            if not isinstance(record, dict) or not (entry is None or isinstance(entry, int)):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise CheckpointFileError(f"{path} line {number}: not a checkpoint") from None
        where = f"checkpoint at {path} line {number} (entry #{entry})"
        if record.get("key") != expected_key:
            raise CheckpointFileError(f"{where}: signed with another audit key (key id {record.get('key')!r}, "
                                      f"this key is {expected_key!r})")
        if not signing.matches(sign(record, key), record.get("mac")):
            raise CheckpointFileError(f"{where}: signature does not verify (forged or altered)")
        records.append((number, record))
    if not records:
        raise CheckpointFileError(f"checkpoint file {path} holds no checkpoint")
    return records
