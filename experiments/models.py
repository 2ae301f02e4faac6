"""Experiment inputs: events sent by applications (POST /api/events, gRPC Track, SDK track()) and
exposures recorded when an evaluation hands a user a variant. Both are written only by
experiments/services.py, in bulk, from batches the in-process buffers flush
(experiments/buffers.py); never a row per request on the request path.

Exposure design
---------------
One row per (experiment, user) while an experiment runs on the flag in that environment
(``experiment`` set), else one per (flag, environment, user) (``experiment`` null: exposures of a
flag nobody experiments on). Each holds the first variant the user was evaluated into
(``variant``), the latest (``last_variant``), when the user was first and last seen, and how
many times the variant changed (``variant_changes`` > 0 = the user is flagged for the analysis:
counted once, in their first variant, never twice). The flush (experiments/services.py
exposures_upsert) decides which: a row goes to the experiment running on its flag and
environment when its first evaluation came after the start; so a user exposed before an
experiment starts is a new, counted user of the experiment the first time they are seen during it.
"""

from django.db import models

from flags.models import Environment, Flag, key_validator, project_field
from projects.scope import ProjectScopedManager


class Event(models.Model):
    """One event an application tracked for one user (a conversion, a purchase with its value).

    ``client_id`` is the id the client sent (else one the server made): unique per environment,
    so a batch sent twice (an SDK retrying after a timeout) adds nothing the second time."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=128)
    user_id = models.CharField(max_length=256)
    value = models.FloatField(null=True, blank=True)
    timestamp = models.DateTimeField()  # when it happened (client clock; else when it was received)
    properties = models.JSONField(default=dict, blank=True)
    client_id = models.CharField(max_length=128)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "client_id"], name="event_client_id_unique"),
        ]
        indexes = [
            # "events named X of these users after time T" (conversion within a window of exposure)
            models.Index(fields=["environment", "event", "user_id", "timestamp"], name="event_name_user_time_idx"),
            models.Index(fields=["environment", "event", "timestamp"], name="event_name_time_idx"),
        ]

    def __str__(self):
        return f"{self.event} by {self.user_id} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class Metric(models.Model):
    """What an experiment measures, defined once per project and reused by its experiments.

    The value of one user, from the events of ``event`` sent within ``window_hours`` after the
    user's first exposure (null: until the experiment stops):
    - conversion: 1 if the user sent at least one, else 0;
    - count: how many they sent; sum: the sum of their values (revenue; an event with no value
      adds 0); the statistic is the mean per exposed user;
    - ratio: the sum of ``event`` values (an event with no value counts 1, so valueless events
      make it a count) over the number of ``denominator_event`` events, pooled over users
      (revenue per order, clicks per session)."""

    class Kind(models.TextChoices):
        CONVERSION = "conversion", "Conversion"
        COUNT = "count", "Count per user"
        SUM = "sum", "Sum per user"
        RATIO = "ratio", "Ratio"

    project = project_field("metrics")
    key = models.CharField(max_length=128, validators=[key_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    event = models.CharField(max_length=128)
    denominator_event = models.CharField(max_length=128, blank=True, default="")
    window_hours = models.PositiveIntegerField(null=True, blank=True)
    higher_is_better = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["key"]
        default_manager_name = "all_objects"
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="unique_metric_key")]

    def __str__(self):
        return self.key


class Experiment(models.Model):
    """An A/B test on a multivariate flag in one environment: draft -> running -> stopped.

    ``weights`` are the variant weights when it started ({variant: fraction}): the split the
    sample-ratio check expects. ``shipped_variant``: the variant stopping it rolled out to everyone."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    project = project_field("experiments")
    key = models.CharField(max_length=128, validators=[key_validator])
    name = models.CharField(max_length=200)
    hypothesis = models.TextField(blank=True, default="")
    # deleting a flag for good (flags.services.flag_delete) takes its experiments and exposures along
    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    control = models.CharField(max_length=128)
    primary_metric = models.ForeignKey(Metric, on_delete=models.PROTECT, related_name="+")
    secondary_metrics = models.ManyToManyField(Metric, blank=True, related_name="+")
    guardrail_metrics = models.ManyToManyField(Metric, blank=True, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    weights = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    shipped_variant = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["-created_at", "key"]
        default_manager_name = "all_objects"
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="unique_experiment_key"),
            # exposures of a flag in an environment go to its one running experiment
            models.UniqueConstraint(fields=["flag", "environment"], condition=models.Q(status="running"),
                                    name="one_running_experiment_per_flag_env"),
        ]

    def __str__(self):
        return self.key


class Exposure(models.Model):
    """A user evaluated into a variant of a multivariate flag in one environment (see the module
    docstring for how experiments use these rows)."""

    experiment = models.ForeignKey(Experiment, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    flag = models.ForeignKey(Flag, on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    user_id = models.CharField(max_length=256)
    variant = models.CharField(max_length=128)  # the first variant: the one the analysis counts
    last_variant = models.CharField(max_length=128)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()  # hour resolution per process (experiments/buffers.py)
    variant_changes = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["flag", "environment", "user_id"], condition=models.Q(experiment__isnull=True),
                                    name="exposure_flag_env_user_unique"),
            models.UniqueConstraint(fields=["experiment", "user_id"], condition=models.Q(experiment__isnull=False),
                                    name="exposure_experiment_user_unique"),
        ]
        indexes = [
            models.Index(fields=["flag", "environment", "first_seen"], name="exposure_flag_env_first_idx"),
        ]

    @property
    def variant_changed(self):
        return self.variant_changes > 0

    def __str__(self):
        return f"{self.user_id} -> {self.flag_id}:{self.variant}"
