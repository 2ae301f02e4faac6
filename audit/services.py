"""audit_record(): the one way an AuditEntry is written, inside the caller's transaction.

The chain: hash = sha256(prev_hash + canonical JSON of the entry). The newest hash lives in the
single AuditChainHead row; each writer locks it (SELECT ... FOR UPDATE on PostgreSQL; SQLite
transactions are already serialized by BEGIN IMMEDIATE), so concurrent writers extend the chain
one at a time and it never forks. The lock is held until the service's transaction commits.
"""

import datetime as dt
import hashlib
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from audit.models import AuditChainHead, AuditEntry

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "created_at", "actor", "action", "target_type", "target_key", "environment",
    "before", "after", "reason", "request_id", "ip",
)


def to_json(value):
    """JSON-native copy (datetimes, decimals ... as strings) so what is hashed is what is stored."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def canonical(entry):
    data = {name: getattr(entry, name) for name in HASHED_FIELDS}
    data["created_at"] = entry.created_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder)


def compute_hash(prev_hash, entry):
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()


def _chain_head():
    head = AuditChainHead.objects.select_for_update().filter(id=1).first()
    if head is None:  # the migration seeds it; tolerate a flushed table
        AuditChainHead.objects.get_or_create(id=1, defaults={"last_hash": GENESIS_HASH})
        head = AuditChainHead.objects.select_for_update().get(id=1)
    return head


def audit_record(*, actor, action, target_type, target_key, environment="", before=None, after=None, reason=""):
    """Append one entry to the chain. Must run inside the caller's transaction.atomic()."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record() must be called inside the service's transaction")
    head = _chain_head()
    user = actor.user if getattr(actor.user, "pk", None) is not None else None
    entry = AuditEntry(
        created_at=timezone.now(),
        actor=actor.label[:200],
        actor_user=user,
        action=action,
        target_type=target_type,
        target_key=target_key,
        environment=environment or "",
        before=to_json(before),
        after=to_json(after),
        reason=reason or "",
        request_id=actor.request_id or "",
        ip=actor.ip,
        prev_hash=head.last_hash,
    )
    entry.hash = compute_hash(head.last_hash, entry)
    entry.save(force_insert=True)
    head.last_hash = entry.hash
    head.last_entry_id = entry.pk
    head.save(update_fields=["last_hash", "last_entry_id"])
    return entry
