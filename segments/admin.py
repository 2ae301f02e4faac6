from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect

from audit.actor import Actor
from flags.admin import add_field_errors
from flags.errors import ServiceError
from segments import services
from segments.models import Segment
from projects.admin import InProjectAdmin


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["key", "name", "description", "conditions"]
        widgets = {"conditions": forms.Textarea(attrs={"rows": 6, "cols": 80, "style": "font-family: monospace"})}

    def clean(self):
        data = super().clean()
        if "conditions" in data:
            fields = {}
            services.check_conditions(fields, data["conditions"] if data["conditions"] is not None else [],
                                      segment_key=data.get("key") or self.instance.key)
            add_field_errors(self, fields)
        return data


@admin.register(Segment)
class SegmentAdmin(InProjectAdmin, admin.ModelAdmin):
    form = SegmentForm
    list_display = ["key", "name", "updated_at"]
    search_fields = ["key", "name", "description"]

    def get_readonly_fields(self, request, obj=None):
        return ["key", "created_at", "updated_at"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        actor = Actor.from_request(request)
        data = {k: form.cleaned_data[k] for k in ("name", "description", "conditions") if k in form.cleaned_data}
        data["conditions"] = data.get("conditions") if data.get("conditions") is not None else []
        if change:
            services.segment_update(actor=actor, segment=obj, data=data)
        else:
            segment = services.segment_create(actor=actor, key=form.cleaned_data["key"], **data)
            obj.pk, obj.created_at, obj.updated_at = segment.pk, segment.created_at, segment.updated_at

    def delete_model(self, request, obj):
        services.segment_delete(actor=Actor.from_request(request), segment=obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():  # all or none: a refusal (in use, protected) rolls the others back
            for segment in queryset:
                self.delete_model(request, segment)

    # a service's refusal (in use; approval_required in a protected environment) is the admin's error
    # message, never a 500; raised inside a transaction, nothing was written
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def changelist_view(self, request, extra_context=None):
        try:
            return super().changelist_view(request, extra_context)
        except ServiceError as exc:  # the bulk delete action
            self.message_user(request, str(exc), level=messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            return self.response_post_save_change(request, None)
