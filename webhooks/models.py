"""Webhooks: per-project subscriptions to the audit log, and the delivery log.

A Webhook follows the audit log by id (``cursor``: the last entry it has seen), so nothing is
missed across crashes or broker outages and nothing is enqueued twice (webhooks/services.py).
Written only by webhooks/services.py.
"""

from django.db import models

from flags.models import project_field
from projects.scope import ProjectScopedManager


class Webhook(models.Model):
    class Format(models.TextChoices):
        STANDARD = "standard", "Standard Webhooks JSON"
        SLACK = "slack", "Slack-compatible message"

    project = project_field("webhooks")
    name = models.CharField(max_length=200, blank=True, default="")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)  # event names (webhooks/events.py EVENTS)
    format = models.CharField(max_length=16, choices=Format.choices, default=Format.STANDARD)
    active = models.BooleanField(default=True)
    # Fernet token under FLAGS_WEBHOOK_KEY / SECRET_KEY (webhooks/crypto.py): a dump alone does not reveal it
    secret_encrypted = models.TextField()
    cursor = models.BigIntegerField(default=0)  # id of the last audit entry this subscription has seen
    consecutive_failures = models.PositiveIntegerField(default=0)  # failed attempts since the last success
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["id"]
        default_manager_name = "all_objects"

    def __str__(self):
        return self.name or self.url


class Delivery(models.Model):
    """One message to one subscription: an audit entry's event (or a test ping), with its attempts."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # an attempt is due at next_attempt_at (first try or a retry)
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # retries exhausted, or the webhook was disabled

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    audit_entry_id = models.BigIntegerField(null=True, blank=True)  # null: a test ping
    event = models.CharField(max_length=64)
    message_id = models.CharField(max_length=100)  # webhook-id: the same on every attempt, receivers dedupe
    body = models.TextField()  # exactly what is signed and sent, so a redelivery sends the same message
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # the cursor already enqueues each entry once; the database refuses a second anyway
            models.UniqueConstraint(fields=["webhook", "audit_entry_id"], name="webhook_delivery_once"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due_idx")]

    def __str__(self):
        return f"#{self.pk} {self.event} -> {self.webhook_id}"


class DeliveryAttempt(models.Model):
    """The delivery log: one row per HTTP attempt."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    succeeded = models.BooleanField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # the retry this failure scheduled

    class Meta:
        ordering = ["delivery_id", "number"]
