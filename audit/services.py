"""audit_record(): the one way an AuditEntry is written, inside the caller's transaction.

The chain: hash = HMAC-SHA256(audit key, prev_hash + canonical JSON of the entry), the key kept
outside the database (settings.FLAGS_AUDIT_KEY), so someone holding only the database cannot
rewrite an entry and recompute the hashes after it. Entries written before the key existed keep
their plain sha256 hashes (compute_hash): rewriting them would be rewriting history. Where the
keyed part begins is sealed, under the key, in the AuditChainHead row (keyed_after_id/_hash).

The newest hash lives in that single row; each writer locks it (SELECT ... FOR UPDATE on
PostgreSQL; SQLite transactions are already serialized by BEGIN IMMEDIATE), so concurrent writers
extend the chain one at a time and it never forks. The lock is held until the service's
transaction commits.
"""

import datetime as dt
import hashlib
import json
import logging

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from audit import signing
from audit.models import AuditChainHead, AuditEntry
from projects import scope

logger = logging.getLogger("flagsite.audit")
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
    if entry.project != "default":  # entries of the default project hash as they did before projects
        data["project"] = entry.project
    data["created_at"] = entry.created_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, cls=DjangoJSONEncoder)


def compute_hash(prev_hash, entry):
    """The unkeyed hash of entries written before the chain was keyed (verification only)."""
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()


def compute_keyed_hash(prev_hash, entry, key=None):
    return signing.mac("chain", prev_hash + canonical(entry), key)


def keyed_seal(entry_id, entry_hash, key=None):
    """MAC over the last unkeyed entry (None, GENESIS_HASH: none): moving where the keyed part
    begins, to pass off rewritten entries as old unkeyed ones, needs the key."""
    return signing.mac("keyed-after", f"{entry_id or 0}:{entry_hash}", key)


def _chain_head():
    head = AuditChainHead.objects.select_for_update().filter(id=1).first()
    if head is None:  # the migration seeds it; tolerate a flushed table (then every entry is keyed)
        AuditChainHead.objects.get_or_create(id=1, defaults={
            "last_hash": GENESIS_HASH, "keyed_after_hash": GENESIS_HASH,
            "keyed_seal": keyed_seal(None, GENESIS_HASH)})
        head = AuditChainHead.objects.select_for_update().get(id=1)
    return head


def audit_record(*, actor, action, target_type, target_key, environment="", before=None, after=None, reason="",
                 project=None):
    """Append one entry to the chain. Must run inside the caller's transaction.atomic().
    project: the project the change belongs to (default: the current one, projects/scope.py)."""

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
        project=project or scope.current(),
        before=to_json(before),
        after=to_json(after),
        reason=reason or "",
        request_id=actor.request_id or "",
        ip=actor.ip,
        prev_hash=head.last_hash,
    )
    entry.hash = compute_keyed_hash(head.last_hash, entry)
    entry.save(force_insert=True)
    head.last_hash = entry.hash
    head.last_entry_id = entry.pk
    head.save(update_fields=["last_hash", "last_entry_id"])
    # once per transaction: unless a wake-up that commits (or is rolled back) with this entry is already due
    connection = transaction.get_connection()
    here = set(connection.savepoint_ids)
    if not any(func is _wake_followers and sids <= here for sids, func, _ in connection.run_on_commit):
        transaction.on_commit(_wake_followers)
    return entry


# Followers of the log (webhooks/apps.py registers one): woken after the commit of each transaction
# that wrote entries. A wake-up is only a hint; followers read the log by id, so a lost one costs
# latency, never an entry. Registered from outside so the arrows keep pointing at audit.
_followers = []


def follow(callback):
    if callback not in _followers:
        _followers.append(callback)


def _wake_followers():
    for callback in _followers[:]:  # a copy: a callback may register another
        try:
            callback()
        except Exception:  # the change is committed; a follower's trouble must not fail the request
            logger.exception("audit follower %s failed", getattr(callback, "__qualname__", callback))
