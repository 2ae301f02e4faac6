"""Who may call what.

Views declare ``required_perms`` (HTTP method -> Django permissions) and ``sdk_allowed``. Users
(session or management token) need the listed model permissions; SDK keys may call only views with
``sdk_allowed = True`` and only for their own environment (``request_environment``).

Projects: a key bound to a project (every SDK key; a management token narrowed to one) works in
that project only; a user (session or token) who is not site staff sees the projects they hold a
role in, and ``has_perms`` answers for the current project (projects/policy.py RoleBackend). On a project's path (``/api/projects/<project>/...``, or the default project's
unprefixed paths) a bound key of another project, like any caller naming a project that does not
exist, gets 404: the answer never tells whether the project exists. So does a member of other
projects (a role elsewhere, not site staff) on the default project's unprefixed paths when they hold
no role in it (projects.policy.hidden_from). Evaluation paths work in the key's own project
(existing clients send no project).
"""

from django.conf import settings
from rest_framework import exceptions, permissions

from flagsite.api.authentication import ApiKeyPrincipal
from projects import policy, scope
from projects.models import DEFAULT


def sdk_principal(request):
    auth = request.auth
    return auth if isinstance(auth, ApiKeyPrincipal) and auth.kind == "sdk" else None


class ModelPermissions(permissions.BasePermission):
    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        check_project(request, view)
        if sdk_principal(request) is not None:
            return getattr(view, "sdk_allowed", False)
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        return user.has_perms(getattr(view, "required_perms", {}).get(method, ()))


def check_project(request, view):
    """404 for a path of a project this caller may not see (module docstring); an evaluation path
    called by a bound key: work in the key's project."""
    principal = request.auth if isinstance(request.auth, ApiKeyPrincipal) else None
    url_project = getattr(request, "url_project", None)
    bound = policy.bound_project(principal)
    if bound is not None and url_project is None and getattr(view, "sdk_allowed", False):
        scope.enter(bound)
        return
    if getattr(view, "project_wide", False):  # /api/projects itself: lists what the caller may see
        return
    project = url_project or DEFAULT
    user = request.user if url_project is not None and principal_is_user(request) else None
    if (url_project is not None or bound is not None) and not policy.may_see(principal, project, user=user):
        raise exceptions.NotFound()
    # the default project's own paths, to a member of other projects only: as /api/projects/default/...
    if url_project is None and bound is None and principal_is_user(request) \
            and policy.hidden_from(request.user, project):
        raise exceptions.NotFound()


def principal_is_user(request):
    """A user's session or management token (not an SDK key)."""
    return sdk_principal(request) is None and getattr(request.user, "pk", None) is not None


def request_environment(request, requested=None):
    """The environment key a request reads or writes.

    ``requested`` (a body field) wins over ``?environment=``; an SDK key is bound to its own
    environment and may not name another one. Default: ``FLAGS_DEFAULT_ENVIRONMENT``.
    """
    return environment_of(request.auth, requested or request.query_params.get("environment") or None)


def environment_of(principal, requested=None):
    """request_environment for a caller authenticated as ``principal`` (request.auth): the
    environment's ref (projects/scope.py), in the key's project when it is bound to one, else in the
    current project."""
    if isinstance(principal, ApiKeyPrincipal) and principal.kind == "sdk":
        own = scope.split(principal.environment)[1]
        if requested is not None and requested not in (own, principal.environment):
            raise exceptions.PermissionDenied(f"This SDK key belongs to environment '{own}'.")
        return principal.environment
    project = principal.project if isinstance(principal, ApiKeyPrincipal) and principal.project else scope.current()
    return scope.ref(project, requested or getattr(settings, "FLAGS_DEFAULT_ENVIRONMENT", "development"))
