"""Tampering as an attacker holding the database would: rows changed behind the application's
back. On PostgreSQL the append-only trigger refuses that; a superuser gets past it with
session_replication_role = replica (triggers off), so the chain, not the trigger, has to tell."""

import contextlib

import pytest
from django.db import connection

from audit.models import AuditChainHead, AuditEntry
from audit.services import GENESIS_HASH, compute_hash


@contextlib.contextmanager
def triggers_off():
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")


def tamper(entry_id, **changes):
    with triggers_off():
        AuditEntry.objects.filter(pk=entry_id).update(**changes)


def delete_entries(**lookup):
    with triggers_off():
        AuditEntry.objects.filter(**lookup).delete()


def move_head_to_newest():
    """Point the chain head at what is left, as a careful attacker would after deleting the tail."""
    newest = AuditEntry.objects.order_by("-id").first()
    AuditChainHead.objects.filter(id=1).update(last_entry_id=newest.pk if newest else None,
                                               last_hash=newest.hash if newest else GENESIS_HASH)


def rehash_from(entry_id, hasher=compute_hash):
    """Recompute every hash from entry_id on with hasher(prev_hash, entry), fixing the links and
    the head: a rewrite that leaves no broken link behind."""
    entries = list(AuditEntry.objects.order_by("id"))
    prev = GENESIS_HASH
    with triggers_off():
        for entry in entries:
            if entry.pk >= entry_id:
                entry.prev_hash = prev
                entry.hash = hasher(prev, entry)
                AuditEntry.objects.filter(pk=entry.pk).update(prev_hash=entry.prev_hash, hash=entry.hash)
            prev = entry.hash
    move_head_to_newest()


@pytest.fixture
def checkpoint_file(tmp_path, settings):
    settings.FLAGS_AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    settings.FLAGS_AUDIT_CHECKPOINT_WEBHOOK = ""
    return tmp_path / "checkpoints.jsonl"
