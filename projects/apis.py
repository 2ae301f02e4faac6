"""REST views for projects. A project's flags, segments and audit log are the same views as the
default project's, mounted under /api/projects/<project>/ (projects/urls.py)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from flags import services as flag_services
from flags.errors import NotFound, ValidationFailed
from flags.models import ApiKey, Environment
from flags.serializers import StrictSerializer, Text
from flagsite.api.common import actor_for, validate
from projects import policy, scope, services
from projects.models import Project, Role, RoleGrant


class ProjectOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    createdAt = serializers.DateTimeField(source="created_at")
    environments = serializers.SerializerMethodField()

    def get_environments(self, project) -> list[str]:
        return [env.key for env in Environment.all_objects.filter(project=project)]


class ProjectInputSerializer(StrictSerializer):
    key = serializers.SlugField(max_length=64)
    name = Text(max_length=128)
    environments = serializers.ListField(child=serializers.SlugField(max_length=64), required=False,
                                         allow_empty=False, max_length=20,
                                         help_text="Environment keys (default: development, staging, production)")


class ProjectListCreateApi(APIView):
    """Projects the caller may see (a key bound to one project sees that one), and new projects."""

    project_wide = True
    required_perms = {"GET": ["projects.view_project"], "POST": ["projects.add_project"]}

    @extend_schema(responses=ProjectOutputSerializer(many=True))
    def get(self, request):
        projects = policy.visible_projects(request.auth, request.user)
        return Response(ProjectOutputSerializer(projects, many=True).data)

    @extend_schema(request=ProjectInputSerializer, responses={201: ProjectOutputSerializer})
    def post(self, request):
        if policy.bound_project(request.auth) is not None:
            from rest_framework.exceptions import PermissionDenied

            raise PermissionDenied("A token narrowed to one project cannot create projects.")
        data = validate(ProjectInputSerializer, request.data)
        project = services.project_create(actor=actor_for(request), **data)
        return Response(ProjectOutputSerializer(Project.objects.get(pk=project.pk)).data, status=201,
                        headers={"Location": f"/api/projects/{project.key}/flags"})


class EnvironmentOutputSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    version = serializers.IntegerField()


class EnvironmentListApi(APIView):
    """The environments of a project (of the default project at /api/environments)."""

    required_perms = {"GET": ["flags.view_flag"]}

    @extend_schema(responses=EnvironmentOutputSerializer(many=True))
    def get(self, request):
        return Response(EnvironmentOutputSerializer(Environment.objects.all(), many=True).data)


# -- members (role grants) and API keys of one project: project admins and site staff -----------

class MemberOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    role = serializers.CharField()
    user = serializers.CharField(allow_null=True, help_text="Username, when granted to a user")
    group = serializers.CharField(allow_null=True, help_text="Group name, when granted to a group")
    environments = serializers.ListField(child=serializers.CharField(),
                                         help_text="Writes limited to these environments (empty: all)")


class MemberInputSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.values)
    user = serializers.CharField(required=False, max_length=150, help_text="A username (or give group)")
    group = serializers.CharField(required=False, max_length=150, help_text="A group name (or give user)")
    environments = serializers.ListField(child=serializers.SlugField(max_length=64), required=False, max_length=50,
                                         help_text="Restrict the role's writes to these environments")

    def validate(self, data):
        if ("user" in data) == ("group" in data):
            raise serializers.ValidationError({"user": ["Name a user or a group (exactly one)."]})
        return data


def _grants():
    return RoleGrant.objects.filter(project_id=scope.current()).select_related("user", "group")


class MemberListCreateApi(APIView):
    """Who holds which role in this project, and new grants (to a user by username or a group by
    name, optionally restricted to environments)."""

    required_perms = {"GET": ["projects.view_rolegrant"], "POST": ["projects.add_rolegrant"]}

    @extend_schema(responses=MemberOutputSerializer(many=True))
    def get(self, request):
        return Response([services.role_grant_data(grant) for grant in _grants()])

    @extend_schema(request=MemberInputSerializer, responses={201: MemberOutputSerializer})
    def post(self, request):
        data = validate(MemberInputSerializer, request.data)
        who = {}
        if "user" in data:
            who["user"] = get_user_model().objects.filter(username=data["user"]).first()
            if who["user"] is None:
                raise ValidationFailed({"user": [f"Unknown user '{data['user']}'."]})
        else:
            who["group"] = Group.objects.filter(name=data["group"]).first()
            if who["group"] is None:
                raise ValidationFailed({"group": [f"Unknown group '{data['group']}'."]})
        grant = services.role_grant(actor=actor_for(request), project=Project.objects.get(key=scope.current()),
                                    role=data["role"], environments=data.get("environments", ()), **who)
        return Response(services.role_grant_data(grant), status=201)


class MemberDetailApi(APIView):
    required_perms = {"DELETE": ["projects.delete_rolegrant"]}

    @extend_schema(responses={204: None})
    def delete(self, request, grant_id):
        grant = _grants().filter(pk=grant_id).first()
        if grant is None:
            raise NotFound(f"No role grant {grant_id} in this project.")
        services.role_revoke(actor=actor_for(request), grant=grant)
        return Response(status=204)


class KeyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to recognise it")
    environment = serializers.CharField(source="environment.key", allow_null=True, default=None)
    user = serializers.CharField(source="user.username", allow_null=True, default=None)
    narrowed = serializers.BooleanField(help_text="A management token working in this project only")
    relayEnvironments = serializers.ListField(child=serializers.CharField(), source="relay_environments",
                                              help_text="Relay tokens: the environments a relay may read (empty: all)")
    createdAt = serializers.DateTimeField(source="created_at")
    lastUsedAt = serializers.DateTimeField(source="last_used_at", allow_null=True)
    revoked = serializers.SerializerMethodField()

    def get_revoked(self, api_key) -> bool:
        return api_key.revoked_at is not None


class KeyCreatedSerializer(KeyOutputSerializer):
    key = serializers.CharField(help_text="The raw key: shown once, never stored")


class KeyInputSerializer(StrictSerializer):
    name = Text(max_length=200)
    kind = serializers.ChoiceField(choices=ApiKey.Kind.values)
    environment = serializers.SlugField(required=False, max_length=64, help_text="SDK keys: their environment")
    narrowed = serializers.BooleanField(default=True, help_text="Management tokens (for yourself): this project only")
    relayEnvironments = serializers.ListField(
        child=serializers.SlugField(max_length=64), required=False, max_length=100,
        help_text="Relay tokens: environments whose snapshots the relay may read (omitted or empty: all)")


def _keys():
    return ApiKey.objects.select_related("environment", "user").order_by("pk")


class KeyListCreateApi(APIView):
    """This project's API keys (never the raw keys), and new ones: an SDK key of one of its
    environments, or a management token for yourself (acting with your roles)."""

    required_perms = {"GET": ["flags.view_apikey"], "POST": ["flags.add_apikey"]}

    @extend_schema(responses=KeyOutputSerializer(many=True))
    def get(self, request):
        return Response(KeyOutputSerializer(_keys(), many=True).data)

    @extend_schema(request=KeyInputSerializer, responses={201: KeyCreatedSerializer})
    def post(self, request):
        data = validate(KeyInputSerializer, request.data)
        sdk = data["kind"] == ApiKey.Kind.SDK
        relay = data["kind"] == ApiKey.Kind.RELAY
        api_key, raw_key = flag_services.api_key_create(
            actor=actor_for(request), name=data["name"], kind=data["kind"], environment=data.get("environment"),
            user=None if sdk or relay else request.user, narrowed=data["narrowed"] and not sdk and not relay,
            relay_environments=data.get("relayEnvironments"))
        return Response({**KeyOutputSerializer(_keys().get(pk=api_key.pk)).data, "key": raw_key}, status=201)


class KeyDetailApi(APIView):
    required_perms = {"DELETE": ["flags.change_apikey"]}

    @extend_schema(responses={204: None})
    def delete(self, request, key_id):
        api_key = _keys().filter(pk=key_id).first()
        if api_key is None:
            raise NotFound(f"No API key {key_id} in this project.")
        flag_services.api_key_revoke(actor=actor_for(request), api_key=api_key)
        return Response(status=204)
