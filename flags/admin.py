"""Django admin: the operator's editor. Forms validate with the services' checks (messages at the
rule's path); every write calls a service, never model.save()."""

import json
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME, ActionForm
from django.db.models import Exists, OuterRef, Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from analytics.models import FlagActivity
from analytics.services import STALE_AFTER_DAYS
from audit.actor import Actor
from flags import services
from flags.editor import editor_options
from flags.errors import Conflict, ServiceError, ValidationFailed
from flags.models import ApiKey, Environment, Flag, FlagState
from flags.pages import restore_reason, set_enabled
from flags.selectors import audit_list
from projects.admin import InProjectAdmin


def add_field_errors(form, fields):
    """Service errors onto a form: "rules[2].operator" goes on the "rules" field, path kept."""
    for path, messages_ in fields.items():
        name = path.split(".")[0].split("[")[0]
        target = name if name in form.fields else None
        for message in messages_:
            form.add_error(target, message if path == name else f"{path}: {message}")


def report(request, modeladmin, exc):
    modeladmin.message_user(request, str(exc), level=messages.ERROR)


def environment_choices():
    return [("", "All environments")] + [(e.key, e.name) for e in Environment.objects.all()]


class FlagActionForm(ActionForm):
    environment = forms.ChoiceField(choices=environment_choices, required=False,
                                    help_text="Turn on / off needs one environment; kill and restore default to all.")
    tag = forms.CharField(required=False, label="Tag",  # checked by services.flag_tags_change
                          help_text="For the add tag / remove tag actions.")


def state_versions(flag, *, lock=False):
    """"production:4,staging:2,...": every state's version. Any change to the flag (its fields bump
    every state) or to one of its states moves it, so it is the change form's optimistic lock.
    lock=True locks the flag row, then its states (the services' lock order) until commit."""
    if lock:
        Flag.objects.select_for_update().filter(pk=flag.pk).first()
    states = FlagState.objects.filter(flag_id=flag.pk)
    if lock:
        states = states.select_for_update(of=("self",))
    rows = sorted(states.values_list("environment__key", "version"))
    return ",".join(f"{env}:{version}" for env, version in rows)


def stale_form_message(seen, now):
    return (f"Not saved: this flag was changed by someone else after you opened this form (versions {seen or '?'} "
            f"-> {now}). Reload the page to see the current values, then redo your edit.")


class JSONTextarea(forms.Textarea):
    """A textarea as tall as the JSON it holds (3 to 30 rows), monospaced."""

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        lines = str(value or "").count("\n") + 1
        context["widget"]["attrs"].update(rows=min(max(lines + 1, 3), 30), cols=80, style="font-family: monospace")
        return context


class IndentedJSONField(forms.JSONField):
    """Rules, tags and variants shown as indented JSON, not one line; still parsed (and refused
    with "Enter a valid JSON.") on save."""

    widget = JSONTextarea

    def to_python(self, value):
        if isinstance(value, str) and value.strip():
            try:
                json.loads(value, cls=self.decoder)
            except json.JSONDecodeError as exc:  # say where: the JSON spans many lines now
                raise forms.ValidationError(
                    f"Enter a valid JSON: {exc.msg[:1].lower()}{exc.msg[1:]} (line {exc.lineno}, column {exc.colno}).",
                    code="invalid") from None
        return super().to_python(value)

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value  # what the user typed, shown back with the error
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class FlagForm(forms.ModelForm):
    # The versions this form was loaded at; saving is refused once they moved (REST, dashboard, admin).
    seen_versions = forms.CharField(widget=forms.HiddenInput, required=False)
    tags = IndentedJSONField(required=False)
    variants = IndentedJSONField(required=False)

    class Meta:
        model = Flag
        fields = ["key", "name", "description", "tags", "kind", "variants", "salt", "stickiness"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["seen_versions"].initial = state_versions(self.instance)

    def clean(self):
        data = super().clean()
        flag = self.instance if self.instance.pk else None
        if flag is not None:
            now = state_versions(flag)
            if data.get("seen_versions") != now:
                raise forms.ValidationError(stale_form_message(data.get("seen_versions"), now), code="stale")
        payload = {k: data[k] for k in services.FLAG_FIELDS if k in data}
        payload["tags"] = payload.get("tags") or []
        payload["variants"] = payload.get("variants") or []
        if flag is None and "key" in data:
            payload["key"] = data["key"]
        add_field_errors(self, services.check_flag_fields(payload, flag=flag))
        return data


class RulesEditorWidget(JSONTextarea):
    """The rules textarea with the targeting editor over it (flags/static/flags/editor/admin.js). The
    textarea stays the form's field: the editor writes the JSON into it, and its raw-JSON toggle shows
    it, so the form posts the same JSON as without JavaScript."""

    class Media:
        css = {"all": ["flags/editor/editor.css"]}
        js = [forms.Script("flags/editor/admin.js", type="module")]


class FlagStateForm(forms.ModelForm):
    rules = IndentedJSONField(required=False, widget=RulesEditorWidget)

    class Meta:
        model = FlagState
        fields = ["enabled", "rules", "off_variant"]
        labels = {"off_variant": "Served when off"}
        help_texts = {"off_variant": "Multivariate flags: the variant (and its value) served while the flag is off "
                                     "here: killed, disabled, or no rule matched."}

    def __init__(self, *args, editor_options=None, **kwargs):
        super().__init__(*args, **kwargs)
        if "off_variant" in self.fields:
            flag = self.instance.flag if self.instance.pk else None
            keys = [v.get("key") for v in (flag.variants if flag else None) or () if isinstance(v, dict)]
            if self.instance.off_variant and self.instance.off_variant not in keys:
                keys.append(self.instance.off_variant)
            field = self.fields["off_variant"]
            self.fields["off_variant"] = forms.ChoiceField(
                choices=[("", "None (no variant, no value)")] + [(k, k) for k in keys if isinstance(k, str)],
                required=False, label=field.label, help_text=field.help_text)
        if self.instance.pk and editor_options is not None:
            self.fields["rules"].widget.attrs.update({
                "data-rules-editor": json.dumps(editor_options),
                "aria-label": f"Rules JSON for {self.instance.environment.name}",
                "data-environment": self.instance.environment.key,  # "Evaluate as" outlines its rules
            })

    def clean_rules(self):
        rules = self.cleaned_data.get("rules")
        if rules is None:
            return []
        errors = services.check_state_rules(rules, flag_key=self.instance.flag.key)
        if errors:
            raise forms.ValidationError([f"{path}: {m}" for path, ms in errors.items() for m in ms])
        return rules


class FlagStateInline(admin.StackedInline):
    model = FlagState
    verbose_name = "environment"  # each section is titled "Environment: Production" (FlagState.__str__)
    verbose_name_plural = "environments"
    form = FlagStateForm
    extra = 0
    can_delete = False
    fields = ["environment", "enabled", "rules", "off_variant", "killed", "killed_reason", "killed_by", "killed_at",
              "version"]
    readonly_fields = ["environment", "killed", "killed_reason", "killed_by", "killed_at", "version"]

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("environment")

    # A state is part of its flag: the flag's permissions govern it (as in REST), not flagstate's.
    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("flags.view_flag") or request.user.has_perm("flags.change_flag")

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("flags.change_flag")


class EnvironmentFilter(admin.SimpleListFilter):
    title = "environment (for status)"
    parameter_name = "environment"

    def lookups(self, request, model_admin):
        return [(e.key, e.name) for e in Environment.objects.all()]

    def queryset(self, request, queryset):
        return queryset  # scopes the status filter and column; filters nothing by itself


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("enabled", "Enabled"), ("disabled", "Disabled"), ("killed", "Killed")]

    def queryset(self, request, queryset):
        condition = {"enabled": {"enabled": True, "killed": False}, "disabled": {"enabled": False},
                     "killed": {"killed": True}}.get(self.value())
        if condition is None:
            return queryset
        states = FlagState.objects.filter(flag=OuterRef("pk"), **condition)
        env = request.GET.get("environment")
        if env:
            states = states.filter(environment__key=env)
        return queryset.filter(Exists(states))


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        tags = sorted({tag for tags in Flag.objects.values_list("tags", flat=True) for tag in (tags or [])})
        return [(t, t) for t in tags]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        keys = [f.key for f in Flag.objects.only("key", "tags") if self.value() in (f.tags or [])]
        return queryset.filter(key__in=keys)


class HasRulesFilter(admin.SimpleListFilter):
    """Flags with targeting rules (in the environment chosen in the environment filter, else in any)."""

    title = "has rules"
    parameter_name = "has_rules"

    def lookups(self, request, model_admin):
        return [("yes", "With rules"), ("no", "No rules (on for everyone when on)")]

    def queryset(self, request, queryset):
        if self.value() not in ("yes", "no"):
            return queryset
        states = FlagState.objects.filter(flag=OuterRef("pk")).exclude(rules=[])
        env = request.GET.get("environment")
        if env:
            states = states.filter(environment__key=env)
        return queryset.filter(Exists(states) if self.value() == "yes" else ~Exists(states))


class StaleFilter(admin.SimpleListFilter):
    """Stale: not evaluated in any environment for STALE_AFTER_DAYS (30) days, and older than that.
    The rule of the daily beat task that puts the "stale" badge on the dashboard
    (analytics.services.flags_mark_stale), computed here from the last evaluation time
    (FlagActivity.last_evaluated_at, updated by every analytics flush), so it is current between
    two beat runs."""

    title = "stale"
    parameter_name = "stale"

    def lookups(self, request, model_admin):
        return [("yes", f"Stale (not evaluated for {STALE_AFTER_DAYS} days)"), ("no", "Evaluated recently or new")]

    def queryset(self, request, queryset):
        if self.value() not in ("yes", "no"):
            return queryset
        cutoff = timezone.now() - timedelta(days=STALE_AFTER_DAYS)
        recent = Exists(FlagActivity.objects.filter(project=OuterRef("project_id"), flag_key=OuterRef("key"),
                                                 last_evaluated_at__gte=cutoff))
        stale = Q(created_at__lt=cutoff) & ~Q(recent)
        return queryset.filter(stale if self.value() == "yes" else ~stale)


def status_column(environment):
    """A changelist column: the flag's status in `environment` as a chip (on / off / KILLED), read
    from the prefetched states (no query per row)."""

    @admin.display(description=environment.name)
    def column(flag):
        state = next((s for s in flag.states.all() if s.environment_id == environment.pk), None)
        if state is None:
            return "-"
        status = "killed" if state.killed else ("on" if state.enabled else "off")
        rules = " with rules" if state.rules else ""
        return format_html('<span class="flag-chip {}" title="{}: {}{}">{}</span>', status, environment.name,
                           status, rules, "KILLED" if state.killed else status)

    column.__name__ = f"status_{environment.key}"
    return column


@admin.register(Flag)
class FlagAdmin(InProjectAdmin, admin.ModelAdmin):
    form = FlagForm
    inlines = [FlagStateInline]
    action_form = FlagActionForm
    actions = ["turn_on", "turn_off", "kill", "restore", "archive", "unarchive", "add_tag", "remove_tag"]
    list_display = ["key", "name", "kind", "tag_list", "archived", "updated_at"]  # + statuses: get_list_display
    list_filter = [EnvironmentFilter, StatusFilter, StaleFilter, HasRulesFilter, TagFilter, "kind", "archived"]

    class Media:
        css = {"all": ["flags/admin.css"]}  # the status chips
    search_fields = ["key", "name", "description"]
    readonly_fields = ["created_at", "updated_at", "audit_history"]

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, FlagStateInline) and obj.pk and request.user.has_perm("flags.change_flag"):
            kwargs["form_kwargs"] = {"editor_options": editor_options(obj)}  # once per page, not per state
        return kwargs

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []  # states are created with the flag

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields + (["key"] if obj is not None else [])

    def get_fields(self, request, obj=None):
        fields = ["key", "name", "description", "tags", "kind", "variants", "salt", "stickiness"]
        return fields + (["seen_versions", "created_at", "updated_at", "audit_history"] if obj is not None else [])

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """Below the form, "Evaluate as" (templates/admin/flags/flag/change_form.html) for those who
        may view flags: the flag page's panel and endpoints (flags/editor.py)."""
        extra_context = dict(extra_context or {})
        flag = self.get_object(request, object_id)
        if flag is not None and request.user.has_perm("flags.view_flag"):
            extra_context["evaluate_data"] = {
                "urls": {name: reverse(f"page-flag-{name}", args=[flag.key])
                         for name in ("evaluate-as", "recent-contexts")},
                "environments": [{"key": e.key, "name": e.name} for e in Environment.objects.all()],
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("states__environment")

    @admin.display(description="tags")
    def tag_list(self, obj):
        return ", ".join(obj.tags or [])

    def get_list_display(self, request):
        """A short status column per environment ("on", "off", "KILLED"), or just the one chosen
        in the environment filter: one line each, where a single status column wrapped."""
        env = request.GET.get("environment")
        columns = [status_column(e) for e in Environment.objects.all() if not env or e.key == env]
        return ["key", "name", "kind", "tag_list", *columns, "archived", "updated_at"]

    @admin.display(description="audit history")
    def audit_history(self, obj):
        entries = audit_list(limit=50, target_type="flag", target_key=obj.key)
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e.pk, e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.environment or "-",
              e.reason or "") for e in entries),
        )
        link = reverse("admin:audit_auditentry_changelist") + f"?target_key={obj.key}"
        return format_html(
            '<table><tr><th>#</th><th>time</th><th>actor</th><th>action</th><th>environment</th>'
            '<th>reason</th></tr>{}</table><p><a href="{}">Full history</a></p>', rows, link)

    # -- writes: all through services ------------------------------------------------------------

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceError as exc:  # raised inside the admin's transaction: everything rolled back
            report(request, self, exc)
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request, obj, form, change):
        actor = Actor.from_request(request)
        data = {k: form.cleaned_data[k] for k in services.FLAG_FIELDS if k in form.cleaned_data}
        data["tags"] = data.get("tags") or []
        data["variants"] = data.get("variants") or []
        if change:
            # clean() compared the versions without a lock; compare again holding the rows until
            # the admin's transaction commits (flag fields and states), so no change slips between.
            now = state_versions(obj, lock=True)
            if form.cleaned_data.get("seen_versions") != now:
                raise Conflict(stale_form_message(form.cleaned_data.get("seen_versions"), now))
            services.flag_update(actor=actor, flag=obj, environment=None, data=data)
        else:
            flag = services.flag_create(actor=actor, key=form.cleaned_data["key"], **data)
            obj.pk, obj.created_at, obj.updated_at = flag.pk, flag.created_at, flag.updated_at

    def save_formset(self, request, form, formset, change):
        actor = Actor.from_request(request)
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for state_form in formset.forms:
            if not state_form.has_changed():
                continue
            state = state_form.instance
            data = {k: state_form.cleaned_data[k] for k in state_form.changed_data if k in ("enabled", "rules")}
            if "off_variant" in state_form.changed_data:
                data["offVariant"] = state_form.cleaned_data["off_variant"] or ""
            services.flag_update(actor=actor, flag=form.instance, environment=state.environment, data=data)
            formset.changed_objects.append((state, state_form.changed_data))

    def delete_model(self, request, obj):
        services.flag_delete(actor=Actor.from_request(request), flag=obj)

    # A flag's change requests (with their reviews), scheduled changes and rollout plans go with it
    # (CASCADE, by design: they only ever mean something for this flag; their history stays in the
    # audit log, and flag.deleted lists the change requests). Their admins never delete them one by
    # one, which must not make the flag itself undeletable ("Cannot delete flag", 403 on confirm).
    GOES_WITH_THE_FLAG = ("changes.ChangeRequest", "changes.Review", "changes.ScheduledChange",
                          "changes.RolloutPlan")

    def get_deleted_objects(self, objs, request):
        from django.apps import apps

        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        owned = set()
        for name in self.GOES_WITH_THE_FLAG:
            try:
                owned.add(str(apps.get_model(name)._meta.verbose_name))
            except LookupError:
                pass
        return deleted, counts, set(perms_needed) - owned, protected

    def delete_queryset(self, request, queryset):
        for flag in queryset:
            services.flag_delete(actor=Actor.from_request(request), flag=flag)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as exc:
            report(request, self, exc)
            return self.response_post_save_change(request, None)

    # -- actions ---------------------------------------------------------------------------------

    def _environments(self, request):
        env = request.POST.get("environment") or None
        return [env] if env else None

    # "Turn on" / "Turn off", not "Toggle": the changelist may be stale, and a flip decided on a
    # stale page undoes someone else's change. Setting the state says what the operator wants; a
    # flag already in that state is reported and left alone (nothing written, no audit entry).
    @admin.action(description="Turn on in the chosen environment", permissions=["change"])
    def turn_on(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Turn off in the chosen environment", permissions=["change"])
    def turn_off(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled):
        envs = self._environments(request)
        if not envs:
            self.message_user(request, f"Choose one environment to turn {'on' if enabled else 'off'} in.",
                              level=messages.ERROR)
            return
        actor = Actor.from_request(request)
        for flag in queryset:
            try:
                set_enabled(actor=actor, flag=flag, environment=envs[0], enabled=enabled)
                self.message_user(request, f"{flag.key} is now {'on' if enabled else 'off'} in {envs[0]}.")
            except Conflict as exc:
                self.message_user(request, f"{flag.key} in {envs[0]}: {exc}", level=messages.WARNING)
            except ServiceError as exc:
                report(request, self, exc)

    def _confirm(self, request, queryset, *, action, title, verb, reason_required, missing_reason=False):
        """The intermediate page asking for the reason recorded in the audit log."""
        envs = self._environments(request)
        return TemplateResponse(request, "admin/flags/reason_confirm.html", {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "flags": queryset,
            "action": action,
            "verb": verb,
            "reason_required": reason_required,
            "environment": (envs or [""])[0],
            "environment_label": ", ".join(envs or ["all environments"]),
            "missing_reason": missing_reason,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        })

    @admin.action(description="Kill switch (asks for a reason)", permissions=["change"])
    def kill(self, request, queryset):
        envs = self._environments(request)
        reason = (request.POST.get("reason") or "").strip()
        if request.POST.get("confirm") == "yes" and reason:
            actor = Actor.from_request(request)
            for flag in queryset:
                try:
                    services.flag_kill(actor=actor, flag=flag, reason=reason, environments=envs)
                    self.message_user(request, f"Killed {flag.key} in {', '.join(envs or ['all environments'])}.",
                                      level=messages.WARNING)
                except ServiceError as exc:
                    report(request, self, exc)
            return None
        return self._confirm(request, queryset, action="kill", title="Kill switch: why?", verb="Kill",
                             reason_required=True, missing_reason=request.POST.get("confirm") == "yes")

    @admin.action(description="Restore (undo kill switch; asks for a reason)", permissions=["change"])
    def restore(self, request, queryset):
        if request.POST.get("confirm") != "yes":
            return self._confirm(request, queryset, action="restore", title="Restore: why?", verb="Restore",
                                 reason_required=False)
        actor = Actor.from_request(request)
        envs = self._environments(request)
        try:
            reason = restore_reason(request.POST.get("reason"))
        except ServiceError as exc:
            return report(request, self, exc)
        for flag in queryset:
            try:
                restored = services.flag_restore(actor=actor, flag=flag, environments=envs, reason=reason)
                self.message_user(request, f"{flag.key}: restored in {len(restored)} environment(s).")
            except ServiceError as exc:
                report(request, self, exc)
        return None

    @admin.action(description="Archive", permissions=["delete"])  # REST archives with DELETE: delete_flag
    def archive(self, request, queryset):
        actor = Actor.from_request(request)
        for flag in queryset:
            try:
                services.flag_archive(actor=actor, flag=flag)
            except ServiceError as exc:
                report(request, self, exc)


    @admin.action(description="Unarchive", permissions=["change"])  # as REST's POST .../unarchive
    def unarchive(self, request, queryset):
        actor = Actor.from_request(request)
        for flag in queryset:
            try:
                if flag.archived:
                    services.flag_unarchive(actor=actor, flag=flag)
                    self.message_user(request, f"Unarchived {flag.key}.")
            except ServiceError as exc:
                report(request, self, exc)

    @admin.action(description="Add the tag below", permissions=["change"])
    def add_tag(self, request, queryset):
        self._change_tags(request, queryset, "add")

    @admin.action(description="Remove the tag below", permissions=["change"])
    def remove_tag(self, request, queryset):
        self._change_tags(request, queryset, "remove")

    def _change_tags(self, request, queryset, how):
        tag = (request.POST.get("tag") or "").strip()
        if not tag:
            self.message_user(request, f"Type the tag to {how} in the Tag field next to the action.",
                              level=messages.ERROR)
            return
        actor = Actor.from_request(request)
        changed = []
        for flag in queryset:
            try:
                before = list(flag.tags or [])
                after = services.flag_tags_change(actor=actor, flag=flag, **{how: [tag]})
                if list(after.tags) != before:
                    changed.append(flag.key)
            except ValidationFailed as exc:
                report(request, self, exc)
                return  # the tag itself is refused, for every flag alike: say it once
            except ServiceError as exc:
                report(request, self, exc)
        verb = "Added" if how == "add" else "Removed"
        self.message_user(request, f"{verb} tag '{tag}' {'to' if how == 'add' else 'from'} {len(changed)} flag(s)"
                                   + (f": {', '.join(changed)}." if changed else "."))


@admin.register(Environment)
class EnvironmentAdmin(InProjectAdmin, admin.ModelAdmin):
    list_display = ["key", "name", "version", "sort_order"]
    readonly_fields = ["key", "name", "version", "sort_order"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "kind", "environment", "user"]


@admin.register(ApiKey)
class ApiKeyAdmin(InProjectAdmin, admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["name", "kind", "prefix", "environment", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["kind", ("environment", admin.RelatedOnlyFieldListFilter), "revoked_at"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["name", "kind", "environment", "user", "relay_environments", "prefix", "created_at",
                "last_used_at", "revoked_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "kind", "environment", "user", "relay_environments"]
        return self.get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False  # keys are revoked, not deleted: the audit log refers to them

    def get_form(self, request, obj=None, **kwargs):
        form_class = super().get_form(request, obj, **kwargs)
        if obj is not None:
            return form_class

        actor = Actor.from_request(request)

        class CheckedForm(form_class):
            def clean(self):
                data = super().clean()
                fields = {}
                if data.get("kind") == "management" and data.get("user"):
                    fields.update(services.check_api_key_user(actor, data["user"]))  # the service's rule
                if data.get("kind") == "sdk" and not data.get("environment"):
                    fields["environment"] = ["SDK keys belong to one environment."]
                if data.get("kind") == "sdk" and data.get("user"):
                    fields["user"] = ["SDK keys do not act as a user; leave empty."]
                if data.get("kind") == "management" and not data.get("user"):
                    fields["user"] = ["Management tokens act as a user."]
                if data.get("kind") == "relay" and (data.get("environment") or data.get("user")):
                    fields["environment"] = ["Relay tokens name relay environments, not an environment or user."]
                if data.get("kind") != "relay" and data.get("relay_environments"):
                    fields["relay_environments"] = ["Only relay tokens name relay environments."]
                if data.get("kind") == "management" and data.get("environment"):
                    fields["environment"] = ["Management tokens are not tied to an environment; leave empty."]
                add_field_errors(self, fields)
                return data

        return CheckedForm

    def save_model(self, request, obj, form, change):
        if change:
            return
        api_key, raw_key = services.api_key_create(
            actor=Actor.from_request(request), name=form.cleaned_data["name"], kind=form.cleaned_data["kind"],
            environment=form.cleaned_data.get("environment"), user=form.cleaned_data.get("user"),
            relay_environments=form.cleaned_data.get("relay_environments") or None)
        obj.pk, obj.prefix, obj.key_hash, obj.created_at = api_key.pk, api_key.prefix, api_key.key_hash, api_key.created_at
        self.message_user(request, format_html(
            "New key (shown once, copy it now): <code>{}</code>", raw_key), level=messages.WARNING)

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request, queryset):
        actor = Actor.from_request(request)
        revoked = 0
        for api_key in queryset:
            try:
                services.api_key_revoke(actor=actor, api_key=api_key)
                revoked += 1
            except ServiceError as exc:
                report(request, self, exc)
        self.message_user(request, f"Revoked {revoked} key(s).")
