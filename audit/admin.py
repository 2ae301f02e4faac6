import json

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.http import HttpResponseRedirect
from django.urls import reverse
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

    # Users are deactivated, not deleted, once something that must keep naming them points at them
    # (PROTECT: change requests, reviews, scheduled changes, rollout plans): the admin says so and
    # what to do, instead of Django's "Cannot delete" page that lists the rows to delete first.
    @staticmethod
    def kept_by(users):
        """{user: number of rows that protect it}, for the users that cannot be deleted."""
        from django.db import router
        from django.db.models.deletion import Collector, ProtectedError

        found = {}
        for user in users:
            try:
                Collector(using=router.db_for_write(type(user))).collect([user])
            except ProtectedError as exc:
                found[user] = len(exc.protected_objects)
        return found

    def _refuse(self, request, kept):
        for user, count in kept.items():
            self.message_user(request, (
                f"'{user.get_username()}' is not deleted: {count} change request{'s' if count != 1 else ''}, "
                "review(s) or scheduled change(s) name them, and the audit trail keeps its authors. Deactivate "
                "the account instead (untick \"Active\" and save): they can no longer sign in or act."),
                level=messages.ERROR)

    def delete_view(self, request, object_id, extra_context=None):
        user = self.get_object(request, object_id)
        kept = self.kept_by([user]) if user is not None else {}
        if kept:
            self._refuse(request, kept)
            return HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))
        return super().delete_view(request, object_id, extra_context)

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST" and request.POST.get("action") == "delete_selected":
            ids = request.POST.getlist(ACTION_CHECKBOX_NAME)
            kept = self.kept_by(get_user_model().objects.filter(pk__in=ids))
            if kept:  # none deleted: the operator deactivates those and deletes the rest
                self._refuse(request, kept)
                return HttpResponseRedirect(request.get_full_path())
        return super().changelist_view(request, extra_context)


class GroupAdmin(ActingAdminMixin, BaseGroupAdmin):
    """A group's permissions are granted to its members: only superusers change them."""

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if request.user.is_superuser else (*fields, "permissions")


for _model, _admin in ((get_user_model(), UserAdmin), (Group, GroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)
