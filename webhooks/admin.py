"""Admin for webhooks: subscriptions (written through webhooks/services.py; the secret shown once on
create and on rotation) and the read-only delivery log with redelivery."""

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from audit.actor import Actor
from flags.admin import add_field_errors
from flags.errors import ServiceError
from projects.admin import InProjectAdmin, ReadOnlyInline
from webhooks import events, services
from webhooks.models import Delivery, DeliveryAttempt, Webhook


class WebhookForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=[(e, f"{e}: {d}") for e, d in events.EVENTS.items()],
                                       widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Webhook
        fields = ["name", "url", "events", "format", "active"]


def _secret_message(request, modeladmin, webhook, secret, what):
    modeladmin.message_user(request, format_html(
        "{} for {} (shown once, copy it now): <code>{}</code>", what, webhook, secret), level=messages.WARNING)


@admin.register(Webhook)
class WebhookAdmin(InProjectAdmin, admin.ModelAdmin):
    form = WebhookForm
    list_display = ["__str__", "url", "events", "format", "active", "consecutive_failures", "disabled_reason",
                    "deliveries_link"]
    list_filter = ["active", "format"]
    actions = ["rotate_secret", "send_test_ping"]
    readonly_fields = ["consecutive_failures", "disabled_at", "disabled_reason", "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    @admin.display(description="deliveries")
    def deliveries_link(self, obj):
        return format_html('<a href="{}?webhook__id__exact={}">log</a>',
                           reverse("admin:webhooks_delivery_changelist"), obj.pk)

    def save_model(self, request, obj, form, change):
        actor = Actor.from_request(request)
        data = {name: form.cleaned_data[name] for name in form.Meta.fields if name in form.cleaned_data}
        try:
            if change:
                services.webhook_update(actor=actor, webhook=obj, data=data)
            else:
                webhook, secret = services.webhook_create(actor=actor, **data)
                obj.pk = webhook.pk
                _secret_message(request, self, webhook, secret, "Signing secret")
        except ServiceError as exc:  # the form validated already; a race is reported, not a 500
            self.message_user(request, str(exc), level=messages.ERROR)

    def get_form(self, request, obj=None, **kwargs):
        form_class = super().get_form(request, obj, **kwargs)

        class ServiceCheckedForm(form_class):
            def clean(self):
                data = super().clean()
                fields = {}
                services._check(fields, {k: data[k] for k in ("url", "events") if k in data}, partial=True)
                add_field_errors(self, fields)
                return data

        return ServiceCheckedForm

    def get_deleted_objects(self, objs, request):
        """The delivery log goes with its subscription: deleting one needs delete_webhook only (the
        log's own admin refuses deletes, which would otherwise block this)."""
        deleted, counts, _perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_model(self, request, obj):
        services.webhook_delete(actor=Actor.from_request(request), webhook=obj)

    def delete_queryset(self, request, queryset):
        for webhook in queryset:
            self.delete_model(request, webhook)

    @admin.action(description="Rotate the signing secret (shows the new one once)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        for webhook in queryset:
            secret = services.webhook_rotate_secret(actor=Actor.from_request(request), webhook=webhook)
            _secret_message(request, self, webhook, secret, "New signing secret")

    @admin.action(description="Send a test ping now", permissions=["change"])
    def send_test_ping(self, request, queryset):
        for webhook in queryset:
            delivery = services.webhook_ping(actor=Actor.from_request(request), webhook=webhook)
            ok = delivery.status == Delivery.Status.SUCCEEDED
            self.message_user(request, f"Ping to {webhook}: {delivery.status} "
                                       f"({delivery.error or f'HTTP {delivery.response_status}'}, "
                                       f"{delivery.latency_ms} ms)", level=messages.SUCCESS if ok else messages.ERROR)


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = ["number", "started_at", "latency_ms", "response_status", "response_excerpt", "error", "succeeded",
              "next_attempt_at"]


@admin.register(Delivery)
class DeliveryAdmin(InProjectAdmin, admin.ModelAdmin):
    """The delivery log: read-only; "Redeliver" sends a delivery again (needs change_webhook)."""

    project_lookup = "webhook__project_id"
    list_display = ["id", "webhook", "event", "status", "attempts", "response_status", "latency_ms", "error",
                    "next_attempt_at", "created_at"]
    list_filter = ["status", "event", ("webhook", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["webhook"]
    actions = ["redeliver"]
    inlines = [AttemptInline]
    fields = ["webhook", "event", "audit_entry_id", "message_id", "status", "attempts", "next_attempt_at",
              "last_attempt_at", "latency_ms", "response_status", "response_excerpt", "error", "body", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_redeliver_permission(self, request):
        return request.user.has_perm("webhooks.change_webhook")

    @admin.action(description="Redeliver (same webhook-id and body)", permissions=["redeliver"])
    def redeliver(self, request, queryset):
        for delivery in queryset:
            services.delivery_redeliver(actor=Actor.from_request(request), delivery=delivery)
        self.message_user(request, f"{queryset.count()} delivery(ies) queued again.")
