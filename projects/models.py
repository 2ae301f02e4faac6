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


class Role(models.TextChoices):
    """What a member may do in a project, each role including the ones before it (projects/policy.py)."""

    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    APPROVER = "approver", "Approver"
    ADMIN = "admin", "Admin"


class RoleGrant(models.Model):
    """A role in one project, granted to a user or to a group (exactly one of them).

    ``environments`` restricts the role's writes to those environment keys of the project (e.g. an
    editor in development and staging only); empty means every environment. Reading is never
    restricted by environment: a member sees the whole project.
    """

    project = models.ForeignKey(Project, to_field="key", on_delete=models.CASCADE, related_name="grants")
    role = models.CharField(max_length=16, choices=Role.choices)
    user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.CASCADE, related_name="project_grants")
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="project_grants")
    environments = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "role", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(user__isnull=False, group__isnull=True)
                           | models.Q(user__isnull=True, group__isnull=False)),
                name="rolegrant_user_xor_group"),
            models.UniqueConstraint(fields=["project", "user", "role"], condition=models.Q(user__isnull=False),
                                    name="rolegrant_unique_user_role"),
            models.UniqueConstraint(fields=["project", "group", "role"], condition=models.Q(group__isnull=False),
                                    name="rolegrant_unique_group_role"),
        ]

    def __str__(self):
        who = f"user {self.user_id}" if self.user_id else f"group {self.group_id}"
        return f"{self.project_id}: {self.role} for {who}"
