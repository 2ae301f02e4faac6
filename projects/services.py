"""Every write to projects: validated, then one transaction with its audit entry."""

from django.db import IntegrityError, transaction

from audit.services import audit_record
from flags.errors import Conflict, ValidationFailed
from flags.models import Environment
from flags.validation import add, check_text
from projects import policy
from projects.models import Project, Role, RoleGrant

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
    policy.require(actor, "projects.add_project", project=key)  # site staff only: no role grants it
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


# -- members: role grants ------------------------------------------------------------------------

def role_grant_data(grant):
    return {"id": grant.pk, "role": grant.role, "user": grant.user.get_username() if grant.user_id else None,
            "group": grant.group.name if grant.group_id else None, "environments": list(grant.environments)}


ALREADY_GRANTED = "Already granted: revoke it first to change its environments."


def check_role_grant(*, project, role, user=None, group=None, environments=()):
    """Field errors for a grant (the service's rules; the admin's form shows them too)."""
    fields = {}
    if role not in Role.values:
        add(fields, "role", f"Must be one of: {', '.join(Role.values)}.")
    if (user is None) == (group is None):
        add(fields, "user", "Name a user or a group (exactly one).")
    if not isinstance(environments, (list, tuple)) or not all(isinstance(e, str) for e in environments):
        add(fields, "environments", "Must be a list of environment keys.")
        return fields
    known = set(Environment.all_objects.filter(project=project).values_list("key", flat=True))
    for index, env_key in enumerate(environments):
        if env_key not in known:
            add(fields, f"environments[{index}]", f"Unknown environment '{env_key}' in project '{project.key}'.")
    if len(set(environments)) != len(environments):
        add(fields, "environments", "Name each environment once.")
    if role == Role.ADMIN and environments:
        add(fields, "environments", "An admin manages the whole project: leave environments empty.")
    who = {"user": user} if user is not None else {"group": group}
    if not fields and RoleGrant.objects.filter(project=project, role=role, **who).exists():
        add(fields, "role", ALREADY_GRANTED)
    return fields


def role_grant(*, actor, project, role, user=None, group=None, environments=()):
    """Grant ``role`` in ``project`` (a Project) to a user or a group (exactly one), optionally
    restricted to some of the project's environments. Project admins and site staff only."""
    environments = list(environments) if isinstance(environments, tuple) else environments
    fields = check_role_grant(project=project, role=role, user=user, group=group, environments=environments)
    if fields.get("role") == [ALREADY_GRANTED]:
        raise Conflict(f"That {role} role is already granted.", fields=fields)
    if fields:
        raise ValidationFailed(fields)
    policy.require(actor, "projects.add_rolegrant", project=project.key)
    who = {"user": user} if user is not None else {"group": group}
    with transaction.atomic():
        try:
            with transaction.atomic():
                grant = RoleGrant.objects.create(project=project, role=role, environments=environments, **who)
        except IntegrityError:
            raise Conflict(f"That {role} role is already granted.", fields={"role": ["Already granted."]}) from None
        audit_record(actor=actor, action="role.granted", target_type="rolegrant", target_key=str(grant.pk),
                     after=role_grant_data(grant), project=project.key)
    return grant


def role_revoke(*, actor, grant):
    """Take a role grant back (project admins and site staff)."""
    policy.require(actor, "projects.delete_rolegrant", project=grant.project_id)
    with transaction.atomic():
        grant = RoleGrant.objects.select_for_update().filter(pk=grant.pk).first()
        if grant is None:
            return
        before = role_grant_data(grant)
        project = grant.project_id
        grant.delete()
        audit_record(actor=actor, action="role.revoked", target_type="rolegrant", target_key=str(before["id"]),
                     before=before, project=project)

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
