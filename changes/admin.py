"""Scheduled changes and rollout plans in the admin: listed and shown (with the time in the author's
zone), cancelled by action through the services. Created through REST or the flag page (the change
is validated as a direct write there); rows are never edited or deleted by hand."""

from django.contrib import admin, messages

from audit.actor import Actor
from changes import selectors, services
from changes.models import RolloutPlan, ScheduledChange, Status
from flags.errors import ServiceError
from projects.admin import InProjectAdmin


class ReadOnlyAdmin(InProjectAdmin, admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields] + ["run_at_local"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # view only; the actions below cancel through the services

    def has_cancel_permission(self, request):
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="local time")
    def run_at_local(self, obj):
        return selectors.local_time(obj.run_at, obj.timezone) if hasattr(obj, "run_at") else ""


@admin.register(ScheduledChange)
class ScheduledChangeAdmin(ReadOnlyAdmin):
    list_display = ["id", "flag", "environment", "operation", "run_at", "run_at_local", "status", "author_label",
                    "plan", "result"]
    list_filter = ["status", "operation", "environment"]
    search_fields = ["flag__key", "author_label", "result"]
    date_hierarchy = "run_at"
    list_select_related = ["flag", "environment"]
    actions = ["cancel"]

    @admin.action(description="Cancel the selected pending changes", permissions=["cancel"])
    def cancel(self, request, queryset):
        actor = Actor.from_request(request)
        for change in queryset.filter(status=Status.PENDING):
            try:
                services.scheduled_change_cancel(actor=actor, change=change)
                self.message_user(request, f"Cancelled scheduled change #{change.pk}.")
            except ServiceError as exc:
                self.message_user(request, f"#{change.pk}: {exc}", level=messages.ERROR)


@admin.register(RolloutPlan)
class RolloutPlanAdmin(ReadOnlyAdmin):
    list_display = ["id", "flag", "environment", "percentages", "days", "at", "timezone", "status", "author_label"]
    list_filter = ["status", "environment"]
    list_select_related = ["flag", "environment"]
    actions = ["cancel"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    @admin.action(description="Cancel the selected active plans (their pending steps too)", permissions=["cancel"])
    def cancel(self, request, queryset):
        actor = Actor.from_request(request)
        for plan in queryset.filter(status=RolloutPlan.PlanStatus.ACTIVE):
            try:
                services.rollout_plan_cancel(actor=actor, plan=plan)
                self.message_user(request, f"Cancelled rollout plan #{plan.pk} and its pending steps.")
            except ServiceError as exc:
                self.message_user(request, f"#{plan.pk}: {exc}", level=messages.ERROR)
