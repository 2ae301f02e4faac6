"""The one place that answers "may this user/key do ACTION on PROJECT/ENVIRONMENT?".

Actions are Django's model permissions ("flags.change_flag"): one vocabulary for the views'
``required_perms``, pages, admin and the services' checks. Who holds one:

- Site staff: a user holding the model permission (directly or through a group) holds it in every
  project, as before projects. So does the operator's command line (an actor with no user or key).
- Members: a user without it gets what their role grants (projects.models.RoleGrant, to the user or
  to one of their groups) allow in that project. Roles are cumulative: viewer reads the project;
  editor changes flags, states and segments (kill and restore too); approver is an editor who may
  also approve change requests (``may_approve``); admin is an editor everywhere in the project who
  also manages its API keys, members (role grants) and environments.
- A grant's ``environments`` restrict its writes to states of those environments; a write that
  touches every environment (segments, a flag's own fields, archive, delete) needs a grant valid in
  all of them. Reads are never restricted by environment. An admin grant is never restricted.
- A management token acts with its user's permissions and roles; a token narrowed to a project (and
  every SDK key) is bound to it and works there only.

The views' gate (DRF's permission class, ``staff_required``, the admin's ``has_*_permission``) asks
Django's ``user.has_perm``, which reaches the roles through ``RoleBackend`` for the current project
(projects/scope.py); the services then call ``require`` with the actor and the environments the
write touches, so no path (REST, pages, admin, commands, Celery) can skip the environment check.

The API answers 404 for a project a caller may not see (no role in it, not site staff, or another
project than its key's), exactly as for one that does not exist, so the answer never reveals which
projects exist.
"""

from django.db.models import Q

from flags.errors import Forbidden
from projects import scope
from projects.models import Project, Role, RoleGrant

LEVEL = {Role.VIEWER: 1, Role.EDITOR: 2, Role.APPROVER: 3, Role.ADMIN: 4}

# The least role each permission needs in a project. Anything not listed (users and groups, creating
# projects, the audit log's writes) is for site staff only.
ROLE_FOR_PERM = {
    "projects.view_project": Role.VIEWER, "flags.view_flag": Role.VIEWER, "flags.view_environment": Role.VIEWER,
    "segments.view_segment": Role.VIEWER, "audit.view_auditentry": Role.VIEWER,
    "flags.add_flag": Role.EDITOR, "flags.change_flag": Role.EDITOR, "flags.delete_flag": Role.EDITOR,
    "segments.add_segment": Role.EDITOR, "segments.change_segment": Role.EDITOR,
    "segments.delete_segment": Role.EDITOR,
    "flags.view_apikey": Role.ADMIN, "flags.add_apikey": Role.ADMIN, "flags.change_apikey": Role.ADMIN,
    "flags.add_environment": Role.ADMIN, "flags.change_environment": Role.ADMIN,
    "projects.view_rolegrant": Role.ADMIN, "projects.add_rolegrant": Role.ADMIN,
    "projects.delete_rolegrant": Role.ADMIN,
    # experiments and scheduled changes are flag work: viewers read them, editors run them
    "experiments.view_metric": Role.VIEWER, "experiments.view_experiment": Role.VIEWER,
    "experiments.add_metric": Role.EDITOR, "experiments.change_metric": Role.EDITOR,
    "experiments.delete_metric": Role.EDITOR, "experiments.add_experiment": Role.EDITOR,
    "experiments.change_experiment": Role.EDITOR, "experiments.delete_experiment": Role.EDITOR,
    "changes.view_scheduledchange": Role.VIEWER, "changes.view_rolloutplan": Role.VIEWER,
    "changes.add_scheduledchange": Role.EDITOR, "changes.change_scheduledchange": Role.EDITOR,
    "changes.add_rolloutplan": Role.EDITOR, "changes.change_rolloutplan": Role.EDITOR,
    # change requests (four eyes): viewers read, editors propose, approvers review and apply; project
    # admins protect environments and close others' requests
    "changes.view_changerequest": Role.VIEWER, "changes.view_protectedenvironment": Role.VIEWER,
    "changes.add_changerequest": Role.EDITOR, "changes.change_changerequest": Role.EDITOR,
    "changes.review_changerequest": Role.APPROVER, "changes.apply_changerequest": Role.APPROVER,
    "changes.close_changerequest": Role.ADMIN,  # withdraw someone else's (stale) request
    "changes.add_protectedenvironment": Role.ADMIN, "changes.change_protectedenvironment": Role.ADMIN,
    "changes.delete_protectedenvironment": Role.ADMIN,
    # webhooks hold signing secrets and send project data elsewhere: project admins only
    "webhooks.view_webhook": Role.ADMIN, "webhooks.add_webhook": Role.ADMIN,
    "webhooks.change_webhook": Role.ADMIN, "webhooks.delete_webhook": Role.ADMIN,
}
PROJECT_APPS = {"flags", "segments", "audit", "projects", "analytics", "experiments", "changes", "webhooks"}
ALL = None  # require(environments=ALL): the write touches every environment of the project


# -- who holds what ----------------------------------------------------------------------------

def grants_of(user):
    """[(project key, role, environments)] of a user's grants, directly or through a group; loaded
    once per user object (a request's user, or a token's user cached for a few seconds)."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return []
    cached = getattr(user, "_project_grants", None)
    if cached is None:
        rows = RoleGrant.objects.filter(Q(user_id=user.pk) | Q(group__user=user.pk))
        cached = [(project, role, list(envs or ())) for project, role, envs in
                  rows.values_list("project_id", "role", "environments").distinct()]
        user._project_grants = cached
    return cached


def role_in(user, project_key):
    """The highest role a user holds in a project, or None."""
    roles = [role for project, role, _ in grants_of(user) if project == project_key]
    return max(roles, key=LEVEL.get) if roles else None


def is_site_staff(user):
    """Holds model permissions of the project apps: works in every project (module docstring)."""
    if not (user and getattr(user, "is_active", False)):
        return False
    return user.is_superuser or any(p.split(".")[0] in PROJECT_APPS for p in user.get_all_permissions())


def site_perm(user, perm):
    """Django's own answer (model permissions only, never the roles)."""
    return bool(user and user.is_active and (user.is_superuser or perm in user.get_all_permissions()))


def _allowed_envs(user, project_key, role):
    """None if some grant of at least ``role`` covers every environment, else the set it covers."""
    envs = set()
    for project, granted, restricted in grants_of(user):
        if project != project_key or LEVEL[granted] < LEVEL[role]:
            continue
        if not restricted or granted == Role.ADMIN:
            return None
        envs.update(restricted)
    return envs


def _covers(user, project_key, role, environments):
    """A grant of at least ``role`` in the project, valid in these environment keys (ALL: every one)."""
    if not getattr(user, "is_active", False) or LEVEL.get(role_in(user, project_key), 0) < LEVEL[role]:
        return False
    allowed = _allowed_envs(user, project_key, role)
    if allowed is None:
        return True
    if environments is ALL:
        from flags.models import Environment

        environments = Environment.all_objects.filter(project_id=project_key).values_list("key", flat=True)
    return set(environments) <= allowed


def role_allows(user, perm, project_key, environments=ALL):
    """May a member do ``perm`` in the project, on these environment keys (ALL: every one)?
    Reads (view_*) ignore environments."""
    role = ROLE_FOR_PERM.get(perm)
    if role is None:
        return False
    return _covers(user, project_key, role, [] if perm.split(".")[1].startswith("view_") else environments)


def may_approve(user, project_key, environments=ALL):
    """Approver or admin in the project (in these environments), or site staff who may change flags:
    the change-request issue asks this before recording an approval."""
    return site_perm(user, "flags.change_flag") or _covers(user, project_key, Role.APPROVER, environments)


def require(actor, perm, *, environments=ALL, project=None):
    """The services' check: raise Forbidden (403) unless ``actor`` may do ``perm`` in ``project`` (default:
    the current one) on ``environments`` (keys; ALL: the write touches every environment)."""
    project = project or scope.current()
    principal = actor.api_key
    bound = bound_project(principal)
    if bound is not None and bound != project:
        raise Forbidden("This key works in another project.")
    user = actor.user
    if user is None:
        if principal is None:
            return  # the operator's command line, the system's own jobs
        raise Forbidden("An SDK key evaluates flags; it changes nothing.")
    if site_perm(user, perm) or role_allows(user, perm, project, environments):
        return
    role = role_in(user, project)
    if role is not None and ROLE_FOR_PERM.get(perm) and LEVEL[role] >= LEVEL[ROLE_FOR_PERM[perm]]:
        allowed = sorted(_allowed_envs(user, project, ROLE_FOR_PERM[perm]) or ())
        touched = "every environment" if environments is ALL else ", ".join(sorted(environments))
        raise Forbidden(f"Your {role} role in project '{project}' is limited to {', '.join(allowed)}; "
                     f"this change touches {touched}.")
    raise Forbidden(f"You may not do this in project '{project}' ({perm}).")


class RoleBackend:
    """Django authentication backend (settings.AUTHENTICATION_BACKENDS, after ModelBackend): a
    member holds the permissions of their role in the *current* project, so ``has_perm`` in DRF's
    permission class, the pages and the admin answer for that project. Environments are checked by
    the services (require)."""

    def authenticate(self, request, **credentials):
        return None

    def get_user(self, user_id):
        return None

    def has_perm(self, user, perm, obj=None):
        if perm == "projects.view_project":  # the project list: members of any project see theirs
            return bool(getattr(user, "is_active", False) and grants_of(user))
        return _role_reaches(user, perm, scope.current())

    def has_module_perms(self, user, app_label):
        return any(self.has_perm(user, perm) for perm in ROLE_FOR_PERM if perm.startswith(f"{app_label}."))


def _role_reaches(user, perm, project_key):
    """The role is high enough for ``perm`` in some environment (the service checks which)."""
    needed, role = ROLE_FOR_PERM.get(perm), role_in(user, project_key)
    return bool(needed and role and getattr(user, "is_active", False) and LEVEL[role] >= LEVEL[needed])


# -- which projects a caller sees --------------------------------------------------------------

def may_use_dashboard(user):
    """May this user open the dashboard (its pages and live updates)? Staff users (as before
    projects), and members: any active user holding a role in some project, who then sees their
    projects only (projects/scope.SessionProjectMiddleware picks one of them). Each page still asks
    the permission it needs in the current project; the admin stays for staff (is_staff) only."""
    if not (user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_active", False)):
        return False
    return bool(user.is_staff or grants_of(user))


def dashboard_project(user, wanted):
    """The project the dashboard shows this user: ``wanted`` (the session's pick) when they may see
    it; else, for a member, their first project by key; else the default project."""
    from projects.models import DEFAULT

    wanted = wanted or DEFAULT
    if is_site_staff(user) or role_in(user, wanted) is not None:
        return wanted
    return min((key for key, _, _ in grants_of(user)), default=wanted)


def bound_project(principal):
    """The project a principal (request.auth) is bound to, or None."""
    return getattr(principal, "project", None)


def may_see(principal, project_key, user=None):
    """The project exists and this caller may see it: its key is not bound elsewhere, and the user
    (if any) is site staff or a member of it."""
    bound = bound_project(principal)
    if bound is not None and bound != project_key:
        return False
    if user is not None and getattr(user, "pk", None) is not None and not is_site_staff(user) \
            and role_in(user, project_key) is None:
        return False
    return Project.objects.filter(key=project_key).exists()


def hidden_from(user, project_key):
    """A member (a role in some project, not site staff) with no role in this project: to them it
    does not exist. Where a path names no project (the default project's unprefixed API paths, a
    management token's /ws) they get what a project that does not exist gets (404; 4404), as on a
    project's own path; a user with no role anywhere keeps the plain 403 of a missing permission."""
    return (getattr(user, "pk", None) is not None and not is_site_staff(user) and bool(grants_of(user))
            and role_in(user, project_key) is None)


def visible_projects(principal, user=None):
    """Projects a caller may see: its key's project when bound; a member's projects; staff: all."""
    bound = bound_project(principal)
    projects = Project.objects.all()
    if bound is not None:
        projects = projects.filter(key=bound)
    if user is not None and getattr(user, "pk", None) is not None and not is_site_staff(user):
        projects = projects.filter(key__in={project for project, _, _ in grants_of(user)})
    return projects


# A flag change needs, wherever it comes from (now, or scheduled for later: changes/services.py),
# the model permissions its direct REST call needs (flags/apis.py): archive is REST's DELETE.
FLAG_CHANGE_PERMS = {"archive": ("flags.delete_flag",)}


def may_change_flag(user, operation=None, *, project=None, environment=None):
    """May this user make (or schedule) this flag change in this environment (key; None: every one)?
    Site staff by their model permissions, members by their role there; an inactive user may not."""
    if user is None or not user.is_active:
        return False
    project = project or scope.current()
    environments = ALL if environment is None else [environment]
    return all(site_perm(user, perm) or role_allows(user, perm, project, environments)
               for perm in FLAG_CHANGE_PERMS.get(operation, ("flags.change_flag",)))
