"""Every write to projects: validated, then one transaction with its audit entry."""

from django.db import IntegrityError, transaction

from audit.services import audit_record
from flags.errors import Conflict, ValidationFailed
from flags.models import Environment
from flags.validation import add, check_text
from projects.models import Project

# a new project's environments: the ones the default project started with (flags/migrations/0002)
DEFAULT_ENVIRONMENTS = [("development", "Development"), ("staging", "Staging"), ("production", "Production")]
KEY_MAX = 64


def project_data(project):
    return {"key": project.key, "name": project.name,
            "environments": list(Environment.all_objects.filter(project=project).values_list("key", flat=True))}


def project_create(*, actor, key, name, environments=None):
    """A project with its environments (default: development, staging, production)."""
    fields = {}
    if not isinstance(key, str) or not key or len(key) > KEY_MAX or not all(c.isalnum() or c in "-_" for c in key) \
            or not key.isascii() or not key[0].isalnum():
        add(fields, "key", f"Use 1-{KEY_MAX} letters, digits, '-' or '_', starting with a letter or digit.")
    check_text(fields, "name", name, required=True, max_length=128)
    environments = DEFAULT_ENVIRONMENTS if environments is None else [(e, e.capitalize()) for e in environments]
    for index, (env_key, _name) in enumerate(environments):
        if not isinstance(env_key, str) or not env_key or "." in env_key or not env_key.isascii() \
                or not all(c.isalnum() or c in "-_" for c in env_key) or len(env_key) > 64:
            add(fields, f"environments[{index}]", "Use 1-64 letters, digits, '-' or '_'.")
    if fields:
        raise ValidationFailed(fields)
    if Project.objects.filter(key=key).exists():
        raise Conflict(f"A project with key '{key}' already exists.", fields={"key": ["Already exists."]})
    with transaction.atomic():
        try:
            with transaction.atomic():
                project = Project.objects.create(key=key, name=name)
        except IntegrityError:
            raise Conflict(f"A project with key '{key}' already exists.", fields={"key": ["Already exists."]}) from None
        for order, (env_key, env_name) in enumerate(environments):
            Environment.all_objects.create(project=project, key=env_key, name=env_name, sort_order=order)
        audit_record(actor=actor, action="project.created", target_type="project", target_key=key,
                     after=project_data(project), project=key)
    return project
