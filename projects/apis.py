"""REST views for projects. A project's flags, segments and audit log are the same views as the
default project's, mounted under /api/projects/<project>/ (projects/urls.py)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from flags.models import Environment
from flags.serializers import StrictSerializer, Text
from flagsite.api.common import actor_for, validate
from projects import policy, services
from projects.models import Project


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
        projects = policy.visible_projects(request.auth)
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
