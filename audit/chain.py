"""Walk the audit hash chain and report the first broken entry."""

from dataclasses import dataclass

from audit.models import AuditChainHead, AuditEntry
from audit.services import GENESIS_HASH, compute_hash


@dataclass
class ChainReport:
    checked: int
    broken_entry_id: int | None = None
    problem: str = ""

    @property
    def ok(self):
        return self.broken_entry_id is None and not self.problem


def verify_chain():
    prev_hash = GENESIS_HASH
    checked = 0
    last_id = None
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=2000):
        if entry.prev_hash != prev_hash:
            return ChainReport(checked, entry.pk, "prev_hash does not match the previous entry's hash "
                                                  "(an entry before it was removed or altered)")
        if compute_hash(prev_hash, entry) != entry.hash:
            return ChainReport(checked, entry.pk, "content does not match its hash (entry was modified)")
        prev_hash = entry.hash
        last_id = entry.pk
        checked += 1
    head = AuditChainHead.objects.filter(id=1).first()
    if head is not None and head.last_hash != prev_hash:
        return ChainReport(checked, head.last_entry_id, f"chain head expects entry #{head.last_entry_id} "
                                                        f"but the chain ends at #{last_id} (entries removed from the end)")
    return ChainReport(checked)
