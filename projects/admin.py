from django.contrib import admin

from projects import scope
from projects.models import Project


class InProjectAdmin:
    """Admin lists and change pages show the rows of the project picked in the switcher only
    (projects/scope.py SessionProjectMiddleware), so admin actions run services in that project."""

    project_lookup = "project_id"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(**{self.project_lookup: scope.current()})


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Read-only here: projects are created through the API (projects.services, audited)."""

    list_display = ["key", "name", "created_at"]
    readonly_fields = ["key", "name", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
