"""The one DRF exception handler: every error answers {"error": {"code", "message", "fields"}}."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from flags.errors import ApprovalRequired, Conflict, Forbidden, NotFound, ValidationFailed

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


CODES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "parse_error",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    PayloadTooLarge: "payload_too_large",
}


def flatten(detail, prefix=""):
    """DRF's nested error detail -> {"rules[2].operator": ["..."]}."""
    if isinstance(detail, dict):
        out = {}
        for key, value in detail.items():
            if key == "non_field_errors":
                path = prefix
            elif isinstance(key, int) or str(key).isdigit():
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for sub, messages in flatten(value, path).items():
                out.setdefault(sub, []).extend(messages)
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return {prefix: [str(item) for item in detail]} if detail else {}
        out = {}
        for index, item in enumerate(detail):
            if item:  # ListField reports [{}, {...}]: empty entries are fine
                for sub, messages in flatten(item, f"{prefix}[{index}]").items():
                    out.setdefault(sub, []).extend(messages)
        return out
    return {prefix: [str(detail)]}


def error_response(status_code, code, message, fields=None, headers=None, **extra):
    body = {"error": {"code": code, "message": message, "fields": fields or {}, **extra}}
    return Response(body, status=status_code, headers=headers)


def _summary(fields):
    path, messages = next(iter(fields.items()))
    return f"{path}: {messages[0]}" if path else messages[0]


def exception_handler(exc, context):
    if isinstance(exc, ValidationFailed):
        fields = {path: list(msgs) for path, msgs in exc.fields.items()}
        message = _summary(fields) if fields else exc.message
        return error_response(400, "validation_error", message, fields)
    if isinstance(exc, ApprovalRequired):  # a protected environment: where to propose it instead
        return error_response(409, exc.code, exc.message, exc.fields, changeRequests=exc.route)
    if isinstance(exc, Conflict):
        return error_response(409, "conflict", exc.message, exc.fields)
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", exc.message)
    if isinstance(exc, Forbidden):
        return error_response(403, "permission_denied", exc.message)
    if isinstance(exc, Http404):
        return error_response(404, "not_found", "Not found.")
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    if isinstance(exc, exceptions.APIException):
        headers = {}
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), "error")
        if isinstance(exc, exceptions.ValidationError):
            fields = flatten(exc.detail)
            return error_response(400, code, _summary(fields) if fields else "Invalid input.", fields)
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)
    if isinstance(exc, DataError):  # input the database refuses (PostgreSQL: a NUL byte in a lookup)
        return error_response(400, "validation_error", "Invalid input: the database refused a value.")
    if isinstance(exc, (OperationalError, InterfaceError)):
        return database_unavailable(exc, context)
    return None


DATABASE_RETRY_AFTER = 5  # seconds: a restarting PostgreSQL is usually back by then


def database_unavailable(exc, context):
    """503 with Retry-After when PostgreSQL is down or restarting (evaluations keep answering from
    the snapshot meanwhile). A write runs in one transaction with its audit entry and version bump,
    so a write that failed here left nothing behind; only when the database vanishes in the instant
    between a write's commit and reading its answer back did the write land (its audit entry shows it)."""
    request = context.get("request")
    logger.warning("database unavailable: %s %s: %s", getattr(request, "method", ""), getattr(request, "path", ""),
                   str(exc).strip() or type(exc).__name__)
    writes = request is not None and request.method not in ("GET", "HEAD", "OPTIONS")
    if writes and not getattr(context.get("view"), "sdk_allowed", False):  # evaluations POST, write nothing
        message = "The database is unavailable; nothing was changed. Retry shortly."
    else:
        message = "The database is unavailable. Retry shortly."
    return error_response(503, "unavailable", message, headers={"Retry-After": str(DATABASE_RETRY_AFTER)})


def api_not_found(request, exception=None):
    """handler404 for /api/ and /ofrep/ paths (wire in flagsite/urls.py): each API's JSON error
    shape, not HTML."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/ofrep/"):
        return JsonResponse({"errorCode": "GENERAL", "errorDetails": "Not found."}, status=404)
    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)
    body = {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
    return JsonResponse(body, status=404)


def api_server_error(request):
    """handler500 for /api/ paths: the JSON error shape."""
    from django.http import JsonResponse
    from django.views.defaults import server_error

    if not request.path.startswith("/api/"):
        return server_error(request)
    body = {"error": {"code": "server_error", "message": "Internal server error.", "fields": {}}}
    return JsonResponse(body, status=500)
