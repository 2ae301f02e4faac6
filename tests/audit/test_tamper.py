"""Tampering someone holding only the database can do, and verify_audit catching it: the chain is
keyed (HMAC under a key outside the database) and checked against signed checkpoints exported
off the database."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.checkpoints import sign
from audit.models import AuditChainHead, AuditEntry
from audit.services import GENESIS_HASH, compute_hash, compute_keyed_hash, keyed_seal
from flags import services
from tests.audit.conftest import delete_entries, move_head_to_newest, rehash_from, tamper

pytestmark = pytest.mark.django_db
OTHER_KEY = "another-key-that-is-not-the-audit-key-0123456789"


def write(actor, flag, times):
    for _ in range(times):
        services.flag_toggle(actor=actor, flag=flag, environment="production")
    return list(AuditEntry.objects.order_by("id").values_list("id", flat=True))


def checkpoint(path):
    call_command("audit_checkpoint", "--file", str(path), stdout=open("/dev/null", "w"))


def verify(path=None):
    from io import StringIO

    out = StringIO()
    call_command("verify_audit", *(["--checkpoints", str(path)] if path else []), stdout=out)
    return out.getvalue()


def one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_valid_chain_with_checkpoints__passes(actor, flag, checkpoint_file):
    write(actor, flag, 2)
    checkpoint(checkpoint_file)
    ids = write(actor, flag, 2)
    checkpoint(checkpoint_file)

    out = verify(checkpoint_file)
    assert f"audit chain OK: {len(ids)} entries verified (all keyed)" in out
    assert f"2 checkpoints match (newest: entry #{ids[-1]}, {len(ids)} entries" in out


def test_delete_tail_and_move_head_back__fails_against_a_checkpoint_naming_the_entry(actor, flag, checkpoint_file):
    ids = write(actor, flag, 4)
    checkpoint(checkpoint_file)
    delete_entries(pk__gte=ids[2])
    move_head_to_newest()

    with pytest.raises(CommandError) as exc:
        verify(checkpoint_file)
    assert one_line(exc).startswith(f"audit chain broken at entry #{ids[-1]}: is missing but the checkpoint of ")
    assert "the chain was truncated" in str(exc.value)


def test_delete_tail_then_new_writes__still_fails(actor, flag, checkpoint_file):
    ids = write(actor, flag, 3)
    checkpoint(checkpoint_file)
    delete_entries(pk=ids[-1])
    move_head_to_newest()
    write(actor, flag, 2)  # the application goes on writing onto the shortened chain

    with pytest.raises(CommandError, match=rf"^audit chain broken at entry #{ids[-1]}: is missing"):
        verify(checkpoint_file)


def test_delete_all__fails_against_a_checkpoint(actor, flag, checkpoint_file):
    ids = write(actor, flag, 2)
    checkpoint(checkpoint_file)
    delete_entries()
    move_head_to_newest()

    assert verify().startswith("audit chain OK: 0 entries")  # the database alone cannot tell...
    with pytest.raises(CommandError, match=rf"^audit chain broken at entry #{ids[-1]}: is missing .* emptied"):
        verify(checkpoint_file)  # ... the checkpoint can


def test_rewrite_and_recompute_with_plain_sha256__fails_naming_the_entry(actor, flag):
    ids = write(actor, flag, 4)
    tamper(ids[1], reason="nothing to see here")
    rehash_from(ids[1], compute_hash)  # every later hash recomputed: no broken link left

    with pytest.raises(CommandError) as exc:
        verify()
    assert one_line(exc).startswith(f"audit chain broken at entry #{ids[1]}: content does not match its keyed hash")


def test_rewrite_and_recompute_with_a_wrong_key__fails_naming_the_entry(actor, flag):
    ids = write(actor, flag, 3)
    tamper(ids[2], actor="mallory")
    rehash_from(ids[2], lambda prev, entry: compute_keyed_hash(prev, entry, OTHER_KEY))

    with pytest.raises(CommandError, match=rf"^audit chain broken at entry #{ids[2]}: content does not match its keyed"):
        verify()


def test_rewrite_by_a_key_holder__passes_the_chain_but_fails_the_checkpoint(actor, flag, checkpoint_file):
    ids = write(actor, flag, 3)
    checkpoint(checkpoint_file)
    tamper(ids[1], reason="rewritten by someone with the key")
    rehash_from(ids[1], compute_keyed_hash)

    assert "audit chain OK" in verify()  # the key alone lets them rewrite...
    with pytest.raises(CommandError, match=rf"^audit chain broken at entry #{ids[-1]}: differs from the checkpoint"):
        verify(checkpoint_file)  # ... but not the checkpoint that already left the database


def test_downgrade__declaring_everything_pre_keying__fails(actor, flag):
    """Moving the keyed boundary to the end, to pass rewritten entries off as old sha256 ones."""
    ids = write(actor, flag, 3)
    tamper(ids[0], reason="rewritten")
    rehash_from(ids[0], compute_hash)
    last = AuditEntry.objects.get(pk=ids[-1])
    AuditChainHead.objects.filter(id=1).update(keyed_after_id=last.pk, keyed_after_hash=last.hash,
                                               keyed_seal=keyed_seal(last.pk, last.hash, OTHER_KEY))

    with pytest.raises(CommandError, match=rf"^audit chain broken at entry #{ids[-1]}: the seal on where the keyed"):
        verify()


def test_chain_under_another_key__fails():
    with pytest.raises(CommandError, match="the seal on where the keyed chain begins does not verify"):
        from django.test import override_settings

        with override_settings(FLAGS_AUDIT_KEY=OTHER_KEY):
            verify()


# -- checkpoints: missing, forged ------------------------------------------------------------------

def test_checkpoint_file_missing__fails(tmp_path):
    with pytest.raises(CommandError, match=r"^cannot read checkpoint file .*nope.jsonl: No such file"):
        verify(tmp_path / "nope.jsonl")


def test_checkpoint_file_empty__fails(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(CommandError, match=r"holds no checkpoint$"):
        verify(tmp_path / "empty.jsonl")


@pytest.mark.parametrize("forge", [
    lambda record: record.update(count=record["count"] - 1),  # altered, signature kept
    lambda record: record.update(entry=record["entry"] - 1, mac="0" * 64),  # made up
])
def test_checkpoint_forged__fails_naming_it(actor, flag, checkpoint_file, forge):
    ids = write(actor, flag, 2)
    checkpoint(checkpoint_file)
    record = json.loads(checkpoint_file.read_text())
    forge(record)
    checkpoint_file.write_text(json.dumps(record) + "\n")

    with pytest.raises(CommandError, match=rf"line 1 \(entry #{record['entry']}\): signature does not verify"):
        verify(checkpoint_file)
    assert record["entry"] in (ids[-1], ids[-2])


def test_checkpoint_signed_with_another_key__fails(actor, flag, checkpoint_file):
    write(actor, flag, 1)
    checkpoint(checkpoint_file)
    record = json.loads(checkpoint_file.read_text())
    record["key"] = "0123456789abcdef"
    record["mac"] = sign(record, OTHER_KEY)
    checkpoint_file.write_text(json.dumps(record) + "\n")

    with pytest.raises(CommandError, match="signed with another audit key"):
        verify(checkpoint_file)


def test_checkpoint_of_an_empty_chain__then_writes__passes(checkpoint_file, actor, flag):
    delete_entries()
    move_head_to_newest()
    checkpoint(checkpoint_file)
    assert json.loads(checkpoint_file.read_text())["count"] == 0
    write(actor, flag, 1)
    assert "1 checkpoints match" in verify(checkpoint_file)


# -- entries from before the key: kept as they are -------------------------------------------------

def _pre_keying_chain(count):
    """Entries as the unkeyed version wrote them (plain sha256), then keying as migration 0003 does."""
    from django.utils import timezone

    delete_entries()
    prev = GENESIS_HASH
    for n in range(count):
        entry = AuditEntry(created_at=timezone.now(), actor="old", action="flag.toggled", target_type="flag",
                           target_key=f"old-{n}", prev_hash=prev)
        entry.hash = compute_hash(prev, entry)
        entry.save(force_insert=True)
        prev = entry.hash
    move_head_to_newest()
    head = AuditChainHead.objects.get(id=1)
    AuditChainHead.objects.filter(id=1).update(keyed_after_id=head.last_entry_id, keyed_after_hash=head.last_hash,
                                               keyed_seal=keyed_seal(head.last_entry_id, head.last_hash))
    return list(AuditEntry.objects.order_by("id").values_list("id", flat=True))


def test_pre_keying_entries_keep_their_hashes__new_ones_are_keyed(actor, flag):
    old = _pre_keying_chain(3)
    old_hashes = list(AuditEntry.objects.order_by("id").values_list("hash", flat=True))
    new = write(actor, flag, 2)[3:]

    assert list(AuditEntry.objects.filter(pk__in=old).order_by("id").values_list("hash", flat=True)) == old_hashes
    entry = AuditEntry.objects.get(pk=new[0])
    assert entry.prev_hash == old_hashes[-1] and entry.hash == compute_keyed_hash(entry.prev_hash, entry)
    out = verify()
    assert f"audit chain OK: 5 entries verified (3 unkeyed sha256 entries up to #{old[-1]} from before keying" in out


def test_pre_keying_entry_rewritten_and_rehashed__fails(actor, flag):
    old = _pre_keying_chain(3)
    write(actor, flag, 1)
    tamper(old[0], actor="mallory")
    rehash_from(old[0], compute_hash)

    with pytest.raises(CommandError, match=rf"^audit chain broken at entry #{old[-1]}: the last entry from before"):
        verify()
