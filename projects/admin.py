from django import forms
from django.contrib import admin

from audit.actor import Actor
from projects import policy, scope, services
from projects.models import Project, RoleGrant


class InProjectAdmin:
    """Admin lists and change pages show the rows of the project picked in the switcher only
    (projects/scope.py SessionProjectMiddleware), so admin actions run services in that project."""

    project_lookup = "project_id"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(**{self.project_lookup: scope.current()})


class ReadOnlyInline(admin.TabularInline):
    """Rows listed on their parent's page and never edited there (services write them): the
    change-request reviews, a delivery's attempts."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RoleGrantInline(admin.TabularInline):
    """Who holds which role, on the project's page (granted and revoked under Role grants)."""

    model = RoleGrant
    fields = ("role", "user", "group", "environments", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Read-only here: projects are created through the API (projects.services, audited). Members
    see the projects they hold a role in; site staff, all."""

    list_display = ["key", "name", "created_at"]
    readonly_fields = ["key", "name", "created_at"]
    inlines = (RoleGrantInline,)

    def get_queryset(self, request):
        return policy.visible_projects(None, request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RoleGrantForm(forms.ModelForm):
    environments = forms.JSONField(required=False, initial=list,
                                   help_text='Restrict the role\'s writes, e.g. ["development", "staging"]; '
                                             "empty: every environment.")

    class Meta:
        model = RoleGrant
        fields = ("role", "user", "group", "environments")

    def clean(self):
        data = super().clean()
        project = Project.objects.get(key=scope.current())
        fields = services.check_role_grant(project=project, role=data.get("role"), user=data.get("user"),
                                           group=data.get("group"), environments=data.get("environments") or [])
        for path, messages in fields.items():
            name = path.split("[")[0]
            for message in messages:
                self.add_error(name if name in self.fields else None, message)
        return data

    def _post_clean(self):
        pass  # the service validates and saves (project comes from the switcher, not the form)


@admin.register(RoleGrant)
class RoleGrantAdmin(InProjectAdmin, admin.ModelAdmin):
    """Grants of the switcher's project: granted and revoked through projects.services (audited);
    to change one, revoke it and grant again."""

    form = RoleGrantForm
    list_display = ("role", "user", "group", "environments", "created_at")
    list_filter = ("role",)

    def get_actions(self, request):
        return {}  # no bulk delete: each revoke goes through the service

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        grant = services.role_grant(actor=Actor.from_request(request), project=Project.objects.get(key=scope.current()),
                                    role=form.cleaned_data["role"], user=form.cleaned_data.get("user"),
                                    group=form.cleaned_data.get("group"),
                                    environments=form.cleaned_data.get("environments") or [])
        obj.pk, obj.project_id, obj.created_at = grant.pk, grant.project_id, grant.created_at

    def delete_model(self, request, obj):
        services.role_revoke(actor=Actor.from_request(request), grant=obj)
