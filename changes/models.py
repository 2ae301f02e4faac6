"""Governed changes: a flag change scheduled for a time, and stepped rollout plans that create a
sequence of them. Fields and constraints only; every write goes through changes/services.py.

Change requests (approvals) come later in this app: an approved request is scheduled by pointing a
ScheduledChange at it (the same operation and payload it proposes), so the applier stays one."""

from django.conf import settings
from django.db import models

from flags.models import project_field
from projects.scope import ProjectScopedManager


class Operation(models.TextChoices):
    """What a scheduled change does: one flag service call each (changes/services.py OPERATIONS)."""

    ENABLE = "enable", "Turn on"
    DISABLE = "disable", "Turn off"
    UPDATE = "update", "Update state (as REST PATCH)"
    KILL = "kill", "Kill switch"
    RESTORE = "restore", "Restore (undo kill)"
    ARCHIVE = "archive", "Archive the flag"
    ROLLOUT = "rollout", "Rollout step (percentage)"


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class RolloutPlan(models.Model):
    """"10% -> 25% -> 50% -> 100%, every weekday at 09:00 Europe/Berlin": its steps are
    ScheduledChanges (operation rollout); cancelling the plan cancels the steps still pending."""

    class PlanStatus(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        HALTED = "halted", "Halted (a step was skipped or failed)"

    project = project_field("rollout_plans")
    flag = models.ForeignKey("flags.Flag", on_delete=models.CASCADE, related_name="rollout_plans")
    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="rollout_plans")
    percentages = models.JSONField()
    days = models.CharField(max_length=16)  # "weekdays" or "daily"
    at = models.TimeField()  # local time of day in `timezone`
    timezone = models.CharField(max_length=64)
    # None: the operator's command line or the system; users are deactivated, not deleted (PROTECT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    author_label = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=PlanStatus.choices, default=PlanStatus.ACTIVE)
    result = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["-id"]
        default_manager_name = "all_objects"

    def __str__(self):
        steps = " -> ".join(f"{p}%" for p in self.percentages)
        return f"{self.flag} in {self.environment}: {steps}, {self.days} at {self.at:%H:%M} {self.timezone}"


class ScheduledChange(models.Model):
    project = project_field("scheduled_changes")
    flag = models.ForeignKey("flags.Flag", on_delete=models.CASCADE, related_name="scheduled_changes")
    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="scheduled_changes")
    operation = models.CharField(max_length=16, choices=Operation.choices)
    payload = models.JSONField(default=dict, blank=True)  # validated at creation (changes/services.py)
    run_at = models.DateTimeField(db_index=True)  # UTC (USE_TZ)
    timezone = models.CharField(max_length=64, default="UTC")  # the author's zone, for showing run_at
    # None: the operator's command line or the system; users are deactivated, not deleted (PROTECT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    author_label = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    # the flag state's version when scheduled (a plan's later steps: when the step before applied;
    # null until then, so a step never runs before the one before it)
    base_version = models.PositiveIntegerField(null=True, blank=True)
    result = models.TextField(blank=True, default="")
    applied_at = models.DateTimeField(null=True, blank=True)
    plan = models.ForeignKey(RolloutPlan, null=True, blank=True, on_delete=models.CASCADE, related_name="steps")
    step = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["run_at", "id"]
        default_manager_name = "all_objects"
        indexes = [models.Index(fields=["status", "run_at"], name="scheduled_due")]

    def __str__(self):
        return f"#{self.pk} {self.get_operation_display()} {self.flag} in {self.environment} at {self.run_at:%Y-%m-%d %H:%M}Z"
