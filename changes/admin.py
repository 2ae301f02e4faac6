"""Scheduled changes and rollout plans in the admin: listed and shown (with the time in the author's
zone), cancelled by action through the services. Created through REST or the flag page (the change
is validated as a direct write there); rows are never edited or deleted by hand.

Change requests: listed and shown with their diff and reviews, approved, rejected and applied by
action through changes/approvals.py (the same rules as REST: never one's own, enough approvals,
once). Protected environments: added, changed and removed through the services (audited)."""

from django.contrib import admin, messages

from audit.actor import Actor
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from changes import approvals, selectors, services
from changes.models import ChangeRequest, ProtectedEnvironment, Review, RolloutPlan, ScheduledChange, Status
from flags.errors import ServiceError
from flags.models import Environment
from projects.admin import InProjectAdmin, ReadOnlyInline


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
    list_filter = ["status", "operation", ("environment", admin.RelatedOnlyFieldListFilter)]
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
    list_filter = ["status", ("environment", admin.RelatedOnlyFieldListFilter)]
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


class ReviewInline(ReadOnlyInline):
    model = Review
    fields = ["reviewer_label", "verdict", "comment", "revision", "created_at"]


@admin.register(ChangeRequest)
class ChangeRequestAdmin(InProjectAdmin, admin.ModelAdmin):
    list_display = ["id", "title", "flag", "environment", "operation", "status", "author_label", "approvals",
                    "created_at"]
    list_filter = ["status", ("environment", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["title", "flag__key", "author_label"]
    list_select_related = ["flag", "environment"]
    inlines = [ReviewInline]
    actions = ["approve", "reject", "apply"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields] + ["diff_table", "approvals"]

    def has_add_permission(self, request):
        return False  # opened through REST or the dashboard (validated as the direct write)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_review_permission(self, request):
        return request.user.has_perm("changes.review_changerequest")

    def has_apply_permission(self, request):
        return request.user.has_perm("changes.apply_changerequest")

    @admin.display(description="approvals")
    def approvals(self, obj):
        return f"{len(approvals.approvers(obj))} of {approvals.required_approvals(obj)}"

    @admin.display(description="diff")
    def diff_table(self, obj):
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
                                ((k, d["before"], d["after"]) for k, d in obj.diff.items()))
        return format_html("<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>"
                           '<p><a href="{}">Open on the dashboard</a></p>', rows,
                           reverse("page-change-request", args=[obj.pk]))

    def _each(self, request, queryset, verb, run):
        actor = Actor.from_request(request)
        for cr in queryset.select_related("flag", "environment"):
            try:
                cr = run(actor, cr)
                self.message_user(request, f"Change request #{cr.pk} {verb}: now {cr.status}.")
            except ServiceError as exc:
                self.message_user(request, f"#{cr.pk}: {exc}", level=messages.ERROR)
            except PermissionError as exc:  # pragma: no cover
                self.message_user(request, f"#{cr.pk}: {exc}", level=messages.ERROR)

    @admin.action(description="Approve the selected change requests", permissions=["review"])
    def approve(self, request, queryset):
        self._each(request, queryset, "approved", lambda actor, cr: approvals.change_request_review(
            actor=actor, change_request=cr, verdict="approve"))

    @admin.action(description="Reject the selected change requests", permissions=["review"])
    def reject(self, request, queryset):
        self._each(request, queryset, "rejected", lambda actor, cr: approvals.change_request_review(
            actor=actor, change_request=cr, verdict="reject"))

    @admin.action(description="Apply the selected approved change requests", permissions=["apply"])
    def apply(self, request, queryset):
        self._each(request, queryset, "applied", lambda actor, cr: approvals.change_request_apply(
            actor=actor, change_request=cr))


@admin.register(ProtectedEnvironment)
class ProtectedEnvironmentAdmin(InProjectAdmin, admin.ModelAdmin):
    """Written through changes/approvals.py (audited); the bulk delete is not offered."""

    list_display = ["environment", "required_approvals", "updated_by", "updated_at"]
    fields = ["environment", "required_approvals"]

    def get_readonly_fields(self, request, obj=None):
        return ["environment"] if obj is not None else []

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "environment":
            kwargs["queryset"] = Environment.objects.all()  # the current project's
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:  # raised inside the admin's transaction: everything rolled back
            self.message_user(request, str(exc), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        saved = approvals.protection_set(actor=Actor.from_request(request), environment=obj.environment,
                                         required_approvals=obj.required_approvals)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        approvals.protection_remove(actor=Actor.from_request(request), environment=obj.environment)
