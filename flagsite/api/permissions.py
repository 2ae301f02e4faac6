"""Who may call what.

Views declare ``required_perms`` (HTTP method -> Django permissions) and ``sdk_allowed``. Users
(session or management token) need the listed model permissions; SDK keys may call only views with
``sdk_allowed = True`` and only for their own environment (``request_environment``).
"""

from django.conf import settings
from rest_framework import exceptions, permissions

from flagsite.api.authentication import ApiKeyPrincipal


def sdk_principal(request):
    auth = request.auth
    return auth if isinstance(auth, ApiKeyPrincipal) and auth.kind == "sdk" else None


class ModelPermissions(permissions.BasePermission):
    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if sdk_principal(request) is not None:
            return getattr(view, "sdk_allowed", False)
        method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
        return user.has_perms(getattr(view, "required_perms", {}).get(method, ()))


def request_environment(request, requested=None):
    """The environment key a request reads or writes.

    ``requested`` (a body field) wins over ``?environment=``; an SDK key is bound to its own
    environment and may not name another one. Default: ``FLAGS_DEFAULT_ENVIRONMENT``.
    """
    return environment_of(request.auth, requested or request.query_params.get("environment") or None)


def environment_of(principal, requested=None):
    """request_environment for a caller authenticated as ``principal`` (request.auth)."""
    if isinstance(principal, ApiKeyPrincipal) and principal.kind == "sdk":
        if requested is not None and requested != principal.environment:
            raise exceptions.PermissionDenied(
                f"This SDK key belongs to environment '{principal.environment}'."
            )
        return principal.environment
    return requested or getattr(settings, "FLAGS_DEFAULT_ENVIRONMENT", "development")
