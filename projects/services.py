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


# -- single sign-on (projects/sso.py): the groups and users an OIDC login describes ------------------

def _grant_list(grants):
    return sorted(({"project": g["project"], "role": g["role"], "environments": sorted(g["environments"])}
                   for g in grants), key=lambda g: (g["project"], g["role"]))


def sso_groups_sync(*, actor, mapping):
    """Every "oidc:<claim group>" group holds exactly the grants ``mapping`` (projects.sso.group_roles)
    lists for it; an "oidc:" group it does not list holds none. Grants in projects that do not exist
    are left out (logged; `manage.py check --database default` warns of them). One audit entry
    per group and project whose grants changed."""
    from django.contrib.auth.models import Group

    from projects.models import RoleGrant
    from projects.sso import PREFIX, group_name, logger

    existing_projects = set(Project.objects.values_list("key", flat=True))
    with transaction.atomic():
        for claim_group in mapping:
            Group.objects.get_or_create(name=group_name(claim_group))
        # concurrent logins sync one at a time (PostgreSQL; SQLite writers are serialized already)
        groups = {g.name: g for g in Group.objects.select_for_update().filter(name__startswith=PREFIX).order_by("id")}
        current = {}
        for grant in RoleGrant.objects.filter(group__in=groups.values()).select_related("group"):
            current.setdefault(grant.group.name, {})[(grant.project_id, grant.role)] = grant
        for name, group in groups.items():
            wanted = {}
            for grant in mapping.get(name.removeprefix(PREFIX), ()):
                if grant["project"] in existing_projects:
                    wanted[(grant["project"], grant["role"])] = grant
                else:
                    logger.warning("FLAGS_OIDC_GROUP_ROLES: no project %r (grant for %s skipped)", grant["project"], name)
            have = current.get(name, {})
            touched = set()
            for key, row in have.items():
                if key not in wanted:
                    row.delete()
                    touched.add(key[0])
                elif sorted(row.environments or []) != wanted[key]["environments"]:
                    row.environments = wanted[key]["environments"]
                    row.save(update_fields=["environments"])
                    touched.add(key[0])
            for key, grant in wanted.items():
                if key not in have:
                    RoleGrant.objects.create(group=group, project_id=grant["project"], role=grant["role"],
                                             environments=grant["environments"])
                    touched.add(key[0])
            for project in sorted(touched):
                before = [{"project": p, "role": r, "environments": row.environments} for (p, r), row in have.items()
                          if p == project]
                after = [g for (p, _r), g in wanted.items() if p == project]
                audit_record(actor=actor, action="sso.group_synced", target_type="group", target_key=name,
                             before={"grants": _grant_list(before)}, after={"grants": _grant_list(after)},
                             project=project)


def sso_user_sync(*, actor, username, email, claim_groups, staff=None, superuser=None):
    """The user ``username`` (created if new) with this email, member of exactly the "oidc:" groups
    of ``claim_groups`` (other groups untouched); ``staff`` / ``superuser``: True or False set the
    flag (a superuser is also staff), None leaves it. One audit entry when anything changed."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from projects.sso import PREFIX, group_name

    email = email.strip()[:254] if isinstance(email, str) else ""
    with transaction.atomic():
        user, created = get_user_model().objects.select_for_update().get_or_create(username=username)
        if created:
            user.set_unusable_password()  # signs in through the provider only (until an admin sets one)
        before = {"email": user.email, "is_staff": user.is_staff, "is_superuser": user.is_superuser,
                  "groups": sorted(user.groups.filter(name__startswith=PREFIX).values_list("name", flat=True))}
        user.email = email or user.email
        if superuser is not None:
            user.is_superuser = superuser
        if staff is not None:
            user.is_staff = staff or bool(superuser)
        elif superuser:
            user.is_staff = True
        if created:
            user.save()
        elif (user.email, user.is_staff, user.is_superuser) != (before["email"], before["is_staff"],
                                                                 before["is_superuser"]):
            user.save(update_fields=["email", "is_staff", "is_superuser"])  # not a whole row an admin may be editing
        wanted = Group.objects.filter(name__in=[group_name(g) for g in claim_groups])
        user.groups.remove(*user.groups.filter(name__startswith=PREFIX).exclude(pk__in=wanted))
        user.groups.add(*wanted)
        after = {"email": user.email, "is_staff": user.is_staff, "is_superuser": user.is_superuser,
                 "groups": sorted(wanted.values_list("name", flat=True))}
        if created or before != after:
            audit_record(actor=actor, action="sso.user_created" if created else "sso.user_synced",
                         target_type="user", target_key=username, before=None if created else before, after=after)
    return user
