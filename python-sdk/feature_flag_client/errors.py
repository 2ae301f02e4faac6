"""Typed SDK exceptions carrying the server's error body ({"error": {code, message, fields}})."""


class FlagsiteError(Exception):
    """Base class: any failure talking to a Flagsite server."""

    status = None

    def __init__(self, message, *, status=None, code=None, fields=None, body=None):
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else self.status
        self.code = code
        self.fields = fields or {}
        self.body = body


class FlagsiteConnectionError(FlagsiteError):
    """The server could not be reached (after retries) or timed out."""


class BadRequestError(FlagsiteError):
    status = 400


class AuthenticationError(FlagsiteError):
    status = 401


class PermissionDeniedError(FlagsiteError):
    status = 403


class NotFoundError(FlagsiteError):
    status = 404


class ConflictError(FlagsiteError):
    status = 409


class PayloadTooLargeError(FlagsiteError):
    status = 413


class RateLimitedError(FlagsiteError):
    status = 429

    def __init__(self, message, *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(FlagsiteError):
    """5xx from the server (after retries)."""


_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
}


def error_from_response(status, body, headers=None):
    """The typed exception for an HTTP error response."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or f"HTTP {status}"
    kwargs = {"status": status, "code": error.get("code"), "fields": error.get("fields"), "body": body}
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else FlagsiteError)
    if cls is RateLimitedError:
        retry_after = (headers or {}).get("Retry-After")
        return cls(message, retry_after=float(retry_after) if retry_after else None, **kwargs)
    return cls(message, **kwargs)
