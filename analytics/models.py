"""Evaluation analytics: hourly rollups (compacted to days after 30 days). Written only by
analytics/services.py, from batches the in-process counters flush; never a row per evaluation.

Every row belongs to one project (``project``: its key, like audit entries): the counters count by
environment ref (projects/scope.py), and the rollup splits the ref into (project, environment key),
so a flag key used by two projects is two series. Reads filter by the current project."""

from django.db import models

from projects.models import DEFAULT


def project_column():
    return models.CharField(max_length=64, default=DEFAULT)


class Granularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class EvaluationRollup(models.Model):
    """How many evaluations of one flag in one environment answered (variant, enabled) in a period."""

    project = project_column()
    granularity = models.CharField(max_length=4, choices=Granularity.choices, default=Granularity.HOUR)
    period_start = models.DateTimeField()
    environment = models.CharField(max_length=64)
    flag_key = models.CharField(max_length=128)
    variant = models.CharField(max_length=128, blank=True, default="")  # "" = no variant
    enabled = models.BooleanField()
    evaluations = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "granularity", "period_start", "environment", "flag_key", "variant", "enabled"],
                name="evaluation_rollup_unique",
            )
        ]
        indexes = [models.Index(fields=["project", "flag_key", "granularity", "period_start"],
                                name="rollup_flag_period_idx"),
                   models.Index(fields=["project", "granularity", "period_start"], name="rollup_period_idx")]

    def __str__(self):
        return f"{self.flag_key}@{self.environment} {self.period_start:%Y-%m-%d %H:00} {self.evaluations}"


class UniqueUsersRollup(models.Model):
    """A HyperLogLog sketch (analytics/hll.py) of the users who evaluated a flag in a period."""

    project = project_column()
    granularity = models.CharField(max_length=4, choices=Granularity.choices, default=Granularity.HOUR)
    period_start = models.DateTimeField()
    environment = models.CharField(max_length=64)
    flag_key = models.CharField(max_length=128)
    sketch = models.BinaryField(default=b"")
    users = models.BigIntegerField(default=0)  # the sketch's estimate, kept for cheap reads

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "granularity", "period_start", "environment", "flag_key"],
                                    name="unique_users_rollup_unique")
        ]
        indexes = [models.Index(fields=["project", "flag_key", "granularity", "period_start"],
                                name="users_flag_period_idx")]


class FlagActivity(models.Model):
    """When a flag of a project was last evaluated (any environment) and whether the beat task marked
    it stale."""

    project = project_column()
    flag_key = models.CharField(max_length=128)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    stale = models.BooleanField(default=False, db_index=True)
    stale_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "flag activity"
        constraints = [models.UniqueConstraint(fields=["project", "flag_key"], name="flag_activity_unique")]

    def __str__(self):
        return f"{self.project}/{self.flag_key} ({'stale' if self.stale else 'active'})"
