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
    # an approved change request to apply at run_at (a protected environment's way to schedule)
    change_request = models.ForeignKey("ChangeRequest", null=True, blank=True, on_delete=models.CASCADE,
                                       related_name="schedules")
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


# -- change requests (four eyes) ------------------------------------------------------------------

class ProtectedEnvironment(models.Model):
    """An environment of a project where flag changes need approved change requests
    (flags/protection.py refuses direct writes; changes/approvals.py applies approved ones)."""

    project = project_field("protected_environments")
    environment = models.OneToOneField("flags.Environment", on_delete=models.CASCADE, related_name="protection")
    required_approvals = models.PositiveSmallIntegerField(default=1)
    updated_by = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["environment__sort_order", "environment__key"]
        default_manager_name = "all_objects"
        constraints = [models.CheckConstraint(condition=models.Q(required_approvals__gte=1),
                                              name="protected_needs_an_approval")]

    def __str__(self):
        n = self.required_approvals
        return f"{self.environment} (protected, {n} approval{'s' if n != 1 else ''})"


class ChangeRequest(models.Model):
    """A proposed flag change in one environment: the operation and payload a scheduled change would
    hold (Operation), the diff against the state at ``base_version``, and its reviews."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved"
        APPLIED = "applied", "Applied"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"
        CONFLICT = "conflict", "Conflict (the flag changed: rebase)"

    project = project_field("change_requests")
    flag = models.ForeignKey("flags.Flag", on_delete=models.CASCADE, related_name="change_requests")
    environment = models.ForeignKey("flags.Environment", on_delete=models.CASCADE, related_name="change_requests")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    operation = models.CharField(max_length=16, choices=Operation.choices)
    payload = models.JSONField(default=dict, blank=True)
    diff = models.JSONField(default=dict, blank=True)  # {field: {"before", "after"}} against base
    base = models.JSONField(default=dict, blank=True)  # the state (and flag fields) at base_version
    base_version = models.PositiveIntegerField()
    # None: the operator's command line; users are deactivated, not deleted (PROTECT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="+")
    author_label = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=State.choices, default=State.OPEN, db_index=True)
    revision = models.PositiveIntegerField(default=1)  # +1 on each amend / rebase (approvals reset)
    applied_by = models.CharField(max_length=200, blank=True, default="")
    applied_at = models.DateTimeField(null=True, blank=True)
    result = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["-id"]
        default_manager_name = "all_objects"
        permissions = [("review_changerequest", "Can review (approve, reject) change requests"),
                       ("apply_changerequest", "Can apply approved change requests"),
                       ("close_changerequest", "Can close (withdraw) anyone's change requests")]
        indexes = [models.Index(fields=["flag", "status"], name="change_request_pending")]

    def __str__(self):
        return f"#{self.pk} {self.title}"


class Review(models.Model):
    class Verdict(models.TextChoices):
        APPROVE = "approve", "Approve"
        REQUEST_CHANGES = "request_changes", "Request changes"
        REJECT = "reject", "Reject"

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reviewer_label = models.CharField(max_length=200)
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    comment = models.TextField(blank=True, default="")
    revision = models.PositiveIntegerField()  # the request's revision reviewed: approvals count for it only
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.reviewer_label}: {self.get_verdict_display()} (revision {self.revision})"
