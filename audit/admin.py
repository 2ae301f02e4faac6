import json

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.utils.html import format_html

from audit.actor import Actor
from audit.auth_changes import acting_as
from audit.models import AuditEntry
from projects.admin import InProjectAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(InProjectAdmin, admin.ModelAdmin):
    """Read-only: the audit log is append-only and hash-chained."""

    project_lookup = "project"

    list_display = ["id", "created_at", "actor", "action", "target_type", "target_key", "environment", "reason"]
    list_filter = ["action", "target_type", "environment"]
    search_fields = ["target_key", "actor", "reason", "request_id"]
    date_hierarchy = "created_at"
    fields = ["created_at", "actor", "action", "target_type", "target_key", "environment", "reason",
              "before_json", "after_json", "request_id", "ip", "prev_hash", "hash"]
    readonly_fields = fields

    def get_list_filter(self, request):
        return self.list_filter

    def lookup_allowed(self, lookup, value, request=None):
        return lookup == "target_key" or super().lookup_allowed(lookup, value, request)

    @admin.display(description="before")
    def before_json(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.before, indent=2, sort_keys=True))

    @admin.display(description="after")
    def after_json(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.after, indent=2, sort_keys=True))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# -- users and groups: privilege changes are audited and reserved to superusers -----------------

class ActingAdminMixin:
    """Every admin write runs `acting_as` its user, so audit/auth_changes.py records who did it."""

    def changeform_view(self, request, *args, **kwargs):
        with acting_as(Actor.from_request(request)):
            return super().changeform_view(request, *args, **kwargs)

    def changelist_view(self, request, *args, **kwargs):  # bulk actions (delete selected)
        with acting_as(Actor.from_request(request)):
            return super().changelist_view(request, *args, **kwargs)

    def delete_view(self, request, *args, **kwargs):
        with acting_as(Actor.from_request(request)):
            return super().delete_view(request, *args, **kwargs)


class UserAdmin(ActingAdminMixin, BaseUserAdmin):
    """Django's UserAdmin lets anyone holding change_user make themselves superuser or grant any
    permission. Here only superusers change privileges (is_superuser, is_staff, groups,
    permissions) or touch a superuser's account (password included)."""

    PRIVILEGES = ("is_superuser", "is_staff", "groups", "user_permissions")

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if request.user.is_superuser else (*fields, *self.PRIVILEGES)

    def has_change_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)


class GroupAdmin(ActingAdminMixin, BaseGroupAdmin):
    """A group's permissions are granted to its members: only superusers change them."""

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if request.user.is_superuser else (*fields, "permissions")


for _model, _admin in ((get_user_model(), UserAdmin), (Group, GroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)
