"""Errors raised by services and selectors; the API's one exception handler maps them to
400 (ValidationFailed), 409 (Conflict), 404 (NotFound) and 403 (Forbidden)."""

from django.core.exceptions import PermissionDenied


class ServiceError(Exception):
    code = "error"
    default_message = "Error."

    def __init__(self, message=None, fields=None):
        self.message = message or self.default_message
        self.fields = dict(fields or {})
        super().__init__(self.message)

    def __str__(self):
        if not self.fields:
            return self.message
        details = "; ".join(f"{path}: {' '.join(messages)}" for path, messages in self.fields.items())
        return f"{self.message} {details}"


class ValidationFailed(ServiceError):
    """Bad input. `fields` maps a path ("rules[2].operator", "name", "states.production.enabled")
    to a list of messages."""

    code = "validation_error"
    default_message = "Invalid input."

    def __init__(self, fields=None, message=None):
        super().__init__(message=message, fields=fields)


class Conflict(ServiceError):
    code = "conflict"
    default_message = "Conflict."


class ApprovalRequired(Conflict):
    """The change touches a protected environment (changes.ProtectedEnvironment): it is made only by
    applying an approved change request (flags/protection.py). 409 with code "approval_required";
    ``route`` is where to propose it."""

    code = "approval_required"
    default_message = "This environment is protected: propose the change as a change request."

    def __init__(self, message=None, fields=None, route="/api/change-requests"):
        super().__init__(message=message, fields=fields)
        self.route = route


class NotFound(ServiceError):
    code = "not_found"
    default_message = "Not found."


class Forbidden(ServiceError, PermissionDenied):
    """The actor may not do this here (projects/policy.py): 403 in the API, a page's 403 or error
    message, the admin's error message."""

    code = "permission_denied"
    default_message = "You may not do this."
