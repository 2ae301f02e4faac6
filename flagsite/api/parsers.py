"""JSON parser that enforces DATA_UPLOAD_MAX_MEMORY_SIZE (DRF reads the raw stream, so Django's
own check on request.body never runs) and answers 413 for bodies above it."""

import json

from django.conf import settings
from rest_framework import parsers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.exceptions import ParseError

from flagsite.api.exceptions import PayloadTooLarge


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = parser_context["request"] if parser_context else None
        if request is not None and limit is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"Request body is not valid JSON: {exc}") from None


class JSONOnlyNegotiation(BaseContentNegotiation):
    """The evaluation hot path answers JSON whatever the Accept header says: skip DRF's Accept
    parsing (measurable at thousands of requests a second)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type
