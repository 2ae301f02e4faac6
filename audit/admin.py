import json

from django.contrib import admin
from django.utils.html import format_html

from audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only and hash-chained."""

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
