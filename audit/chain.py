"""Walk the audit chain under the audit key, and against signed checkpoints when given; report the
first broken entry.

The chain is an unkeyed prefix (entries written before the key existed, plain sha256, up to and
including the head's keyed_after_id, sealed under the key) followed by keyed entries (HMAC-SHA256).
"""

from dataclasses import dataclass

from django.conf import settings

from audit import signing
from audit.models import AuditChainHead, AuditEntry
from audit.services import GENESIS_HASH, compute_hash, compute_keyed_hash, keyed_seal


@dataclass
class ChainReport:
    checked: int
    broken_entry_id: int | None = None
    problem: str = ""
    unkeyed: int = 0  # entries from before keying, up to keyed_after_id
    keyed_after_id: int | None = None
    checkpoints: int = 0
    newest_checkpoint: dict | None = None

    @property
    def ok(self):
        return self.broken_entry_id is None and not self.problem


def verify_chain(*, key=None, checkpoints=()):
    """checkpoints: [(line number, record)] from audit.checkpoints.read_checkpoints (already
    signature-checked); every one must match the chain."""
    key = settings.FLAGS_AUDIT_KEY if key is None else key
    head = AuditChainHead.objects.filter(id=1).first()
    keyed_after_id = head.keyed_after_id if head else None
    keyed_after_hash = head.keyed_after_hash if head else GENESIS_HASH
    report = ChainReport(0, keyed_after_id=keyed_after_id, checkpoints=len(checkpoints))
    if head is not None and not signing.matches(keyed_seal(keyed_after_id, keyed_after_hash, key), head.keyed_seal):
        return _broken(report, keyed_after_id, "the seal on where the keyed chain begins does not verify "
                                               "(moved, or this is not the audit key the chain was made with)")
    wanted = {}
    for number, record in checkpoints:
        wanted.setdefault(record["entry"], []).append((number, record))

    prev_hash = GENESIS_HASH
    last_id = None
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=2000):
        if entry.prev_hash != prev_hash:
            return _broken(report, entry.pk, "prev_hash does not match the previous entry's hash "
                                             "(an entry before it was removed or altered)")
        if keyed_after_id is not None and entry.pk <= keyed_after_id:
            if compute_hash(prev_hash, entry) != entry.hash:
                return _broken(report, entry.pk, "content does not match its hash (entry was modified)")
            if entry.pk == keyed_after_id and entry.hash != keyed_after_hash:
                return _broken(report, entry.pk, "the last entry from before keying no longer has the hash sealed "
                                                 "when keying began (entries up to it were rewritten)")
            report.unkeyed += 1
        else:
            if keyed_after_id is not None and report.unkeyed == report.checked and last_id != keyed_after_id:
                return _broken(report, keyed_after_id, "the last entry from before keying is missing "
                                                       f"(the chain goes on at #{entry.pk})")
            if not signing.matches(compute_keyed_hash(prev_hash, entry, key), entry.hash):
                return _broken(report, entry.pk, "content does not match its keyed hash (entry was modified, "
                                                 "or hashed without the audit key)")
        report.checked += 1
        for number, record in wanted.pop(entry.pk, ()):
            if record["hash"] != entry.hash or record["count"] != report.checked:
                return _broken(report, entry.pk, f"differs from the checkpoint of {record['at']} (line {number}): "
                                                 f"hash or entry count changed since (rewritten, or entries removed)")
        prev_hash = entry.hash
        last_id = entry.pk

    if keyed_after_id is not None and last_id is None:
        return _broken(report, keyed_after_id, "the chain is empty but entries up to it existed when keying began "
                                               "(all entries deleted)")
    for entry_id, records in sorted(wanted.items(), key=lambda item: item[0] or 0):
        number, record = records[0]
        if entry_id is None:  # a checkpoint of the empty chain
            continue
        return _broken(report, entry_id, f"is missing but the checkpoint of {record['at']} (line {number}) recorded it "
                                         f"with {record['count']} entries (the chain was truncated or emptied)")
    if checkpoints:
        report.newest_checkpoint = max((r for _, r in checkpoints), key=lambda r: (r["entry"] or 0, r["at"]))
    if head is not None and head.last_hash != prev_hash:
        return _broken(report, head.last_entry_id, f"chain head expects entry #{head.last_entry_id} "
                                                   f"but the chain ends at #{last_id} (entries removed from the end)")
    return report


def _broken(report, entry_id, problem):
    report.broken_entry_id, report.problem = entry_id, problem
    return report
