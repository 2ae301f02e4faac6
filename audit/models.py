"""AuditEntry: append-only and hash-chained. Written only by audit.services.audit_record()."""

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    created_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=200)
    # No database constraint and nothing done on delete: entries are append-only (on PostgreSQL a
    # trigger refuses UPDATE), so deleting a user keeps the id of who acted; `actor` keeps the name.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+",
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=32)
    target_key = models.CharField(max_length=128, db_index=True)
    environment = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # One chain for every project (projects/models.py says why); hashed only when not "default",
    # so every entry written before projects keeps its hash.
    project = models.CharField(max_length=64, default="default", db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["target_type", "target_key", "-id"], name="audit_target_idx")]

    def __str__(self):
        return f"#{self.pk} {self.action} {self.target_key}"


class AuditChainHead(models.Model):
    """One row holding the newest hash. Writers lock it (SELECT ... FOR UPDATE) so the chain is
    extended by one transaction at a time and never forks under concurrency."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_hash = models.CharField(max_length=64)
    last_entry_id = models.BigIntegerField(null=True)
    # The last entry hashed without the key (written before keying; null: none) and the seal
    # (audit.services.keyed_seal) that ties the boundary to the key: every later entry is keyed.
    keyed_after_id = models.BigIntegerField(null=True)
    keyed_after_hash = models.CharField(max_length=64, default="0" * 64)
    keyed_seal = models.CharField(max_length=64, default="")
