"""Segments: global, referenced by flags' rules by key. Writes go through segments/services.py."""

from django.db import models

from flags.models import key_validator


class Segment(models.Model):
    key = models.CharField(max_length=128, unique=True, validators=[key_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    conditions = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key
