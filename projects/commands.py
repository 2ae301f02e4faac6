"""--project for manage.py commands: the command works in that project (default: default)."""

from django.core.management.base import CommandError

from projects import scope
from projects.models import DEFAULT, Project


def add_project_argument(parser):
    parser.add_argument("--project", default=DEFAULT, help=f"project key (default: {DEFAULT})")


def project_scope(project_key):
    """scope.using(project_key) for a command; an unknown project is a CommandError."""
    if not Project.objects.filter(key=project_key).exists():
        raise CommandError(f"Unknown project '{project_key}'.")
    return scope.using(project_key)
