"""Experiment inputs: events sent by applications (POST /api/events, gRPC Track, SDK track()) and
exposures recorded when an evaluation hands a user a variant. Both are written only by
experiments/services.py, in bulk, from batches the in-process buffers flush
(experiments/buffers.py); never a row per request on the request path.

Exposure design, and where the Experiment model goes next
---------------------------------------------------------
Today an Exposure is experiment-independent: one row per (flag, environment, user id), holding
the first variant the user was evaluated into (``variant``), the latest (``last_variant``), when
the user was first and last seen, and how many times the variant changed (``variant_changes``,
> 0 = the user is flagged for the analysis: counted once, in their first variant, never twice).

An Experiment (flag + environment + start/stop, issue 20) is added next without rewriting this:
its exposures are the rows of its flag and environment whose ``first_seen`` falls inside its
window (an index below serves exactly that query). If experiments must own their rows (a user
exposed before the start shows up again during it), add a nullable ``experiment`` FK and move the
uniqueness to (experiment, user_id) where experiment is set; the flush then maps (environment,
flag) to the running experiment with an in-process lookup, and the upsert below keeps its shape.
"""

from django.db import models

from flags.models import Environment, Flag


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


class Exposure(models.Model):
    """A user evaluated into a variant of a multivariate flag in one environment (see the module
    docstring for how experiments use these rows)."""

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
            models.UniqueConstraint(fields=["flag", "environment", "user_id"], name="exposure_flag_env_user_unique"),
        ]
        indexes = [
            models.Index(fields=["flag", "environment", "first_seen"], name="exposure_flag_env_first_idx"),
        ]

    @property
    def variant_changed(self):
        return self.variant_changes > 0

    def __str__(self):
        return f"{self.user_id} -> {self.flag_id}:{self.variant}"
