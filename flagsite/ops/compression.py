"""gzip for large JSON answers only (flag lists, SDK snapshots, audit pages): bench/ops.py measured
the gain on those; small evaluation answers (< FLAGS_GZIP_MIN_BYTES) are left alone, and HTML pages
are never compressed (BREACH: they carry CSRF tokens next to reflected input)."""

import re

from django.conf import settings
from django.middleware.gzip import GZipMiddleware


class JsonGZipMiddleware(GZipMiddleware):
    def process_response(self, request, response):
        if not getattr(settings, "FLAGS_GZIP", True):
            return response
        if response.streaming or not response.get("Content-Type", "").startswith("application/json"):
            return response
        if len(response.content) < getattr(settings, "FLAGS_GZIP_MIN_BYTES", 1024):
            return response
        if not _PATHS.match(request.path):
            return response
        return super().process_response(request, response)


_PATHS = re.compile(r"^/(api|ofrep)/")
