"""Segments: one project's, referenced by flags' rules by key. Writes go through segments/services.py."""

from django.db import models

from flags.models import key_validator, project_field
from projects.scope import ProjectScopedManager


class Segment(models.Model):
    project = project_field("segments")
    key = models.CharField(max_length=128, validators=[key_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    conditions = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProjectScopedManager()
    all_objects = models.Manager()

    class Meta:
        ordering = ["key"]
        default_manager_name = "all_objects"
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="unique_segment_key")]

    def __str__(self):
        return self.key
