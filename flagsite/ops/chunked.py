"""Request bodies sent with ``Transfer-Encoding: chunked`` (no Content-Length).

Django's WSGI request reads at most Content-Length bytes (none without it) and DRF treats a missing
Content-Length as "no body", so under granian and daphne a chunked evaluation arrived empty (400).
The servers hand the application the de-chunked body; here it is read to its end, at most
DATA_UPLOAD_MAX_MEMORY_SIZE bytes (413 in the API's error shape past it), and given a
Content-Length, so every view, parser and form sees it like a sized body.
"""

import io

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream, WSGIRequest
from django.http import JsonResponse

READ_SIZE = 64 * 1024


class ChunkedBodyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        meta = request.META
        if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() and not meta.get("CONTENT_LENGTH"):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            raw = request.environ["wsgi.input"] if isinstance(request, WSGIRequest) else request._stream
            body = _read_to_end(raw, limit)
            if body is None:
                message = f"Request body is larger than {limit} bytes."
                return JsonResponse({"error": {"code": "payload_too_large", "message": message, "fields": {}}},
                                    status=413)
            meta["CONTENT_LENGTH"] = str(len(body))
            request._stream = LimitedStream(io.BytesIO(body), len(body))
        return self.get_response(request)


def _read_to_end(stream, limit):
    """The body's bytes, or None when it is longer than limit (None: no limit)."""
    parts, size = [], 0
    while chunk := stream.read(READ_SIZE):
        parts.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            return None
    return b"".join(parts)
