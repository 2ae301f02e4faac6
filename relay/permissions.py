from rest_framework import permissions

from flagsite.api.authentication import ApiKeyPrincipal


def relay_principal(request):
    auth = request.auth
    return auth if isinstance(auth, ApiKeyPrincipal) and auth.kind == "relay" else None


class RelayTokenOnly(permissions.BasePermission):
    """/api/relay/*: relay tokens only (SDK keys, management tokens and sessions get 403)."""

    message = "A relay token is required (manage.py create_api_key --kind relay)."

    def has_permission(self, request, view):
        return relay_principal(request) is not None
