"""Projects: each owns its environments, flags, segments and API keys (flags/models.py,
segments/models.py point here by the project's key). The `default` project holds everything that
existed before projects (projects/migrations/0001 creates it); unscoped paths mean it.

The audit log stays ONE hash chain with a `project` column on each entry (audit/models.py): one
append order for the whole site, one head row to lock, one verify_audit walk and one exported
checkpoint, and a cross-project change (a segment used by two projects later, a site-wide key
rotation) never has to pick a chain. Per-project reads filter by the column.
"""

from django.db import models

DEFAULT = "default"


class Project(models.Model):
    # the key is what other tables point at (to_field="key"), so it never changes once created
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key
