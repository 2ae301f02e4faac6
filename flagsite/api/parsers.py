"""JSON parser that enforces DATA_UPLOAD_MAX_MEMORY_SIZE (DRF reads the raw stream, so Django's
own check on request.body never runs) and answers 413 for bodies above it.

Nesting deeper than MAX_JSON_DEPTH (64) levels is refused with 400 whatever the stack depth at
parse time (json.loads' own limit is the interpreter's recursion limit minus the frames already in
use, so the same body parsed on one endpoint and not on another, and values hundreds of levels deep
were stored). Rules nest at most 16 levels, about 35 levels of JSON in a body.

It also refuses (400, like any other unparsable body) text that is not Unicode: bytes that are not
valid in their encoding and lone surrogates. Python's json module lets both through (it decodes
bytes with "surrogatepass" and turns an unpaired "\\ud800" escape into a lone surrogate), and a lone
surrogate then failed every database write (500) and crashed the process in mmh3's hashing.
"""

import json
import re

from django.conf import settings
from rest_framework import parsers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.exceptions import ParseError

from flagsite.api.exceptions import PayloadTooLarge


def refuse_declared_length_over(request, limit, message):
    """413 before reading the body when its declared Content-Length is over ``limit`` (a chunked or
    lying body is still cut at the limit by whoever reads it)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise PayloadTooLarge(message)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = parser_context["request"] if parser_context else None
        if request is not None and limit is not None:
            refuse_declared_length_over(request, limit, f"Request body is larger than {limit} bytes.")
        return parse_json(stream.read(limit + 1) if limit is not None else stream.read())


def parse_json(raw):
    """A JSON request body (bytes) -> data, with every rule above: 413 past the upload limit, 400
    (ParseError) for text that is not JSON, not Unicode, or nested too deep."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and len(raw) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    try:
        text = raw.decode(json.detect_encoding(raw)) if isinstance(raw, bytes) else raw
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ParseError(f"Request body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
        raise ParseError("Request body is not valid JSON: a string holds a lone surrogate "
                         "(a \\uD800-\\uDFFF escape that is not half of a pair).")
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _too_deep(data, MAX_JSON_DEPTH):
        raise ParseError(f"Request body is nested deeper than {MAX_JSON_DEPTH} levels.")
    return data


MAX_JSON_DEPTH = 64


def _too_deep(data, limit):
    """Whether containers nest deeper than ``limit`` levels (the top-level value is level 1)."""
    stack = [(data, 1)] if isinstance(data, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(data):
    """Any str (key or value) in parsed JSON holding a lone surrogate. Iterative: JSON nests deep."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class JSONOnlyNegotiation(BaseContentNegotiation):
    """The evaluation hot path answers JSON whatever the Accept header says: skip DRF's Accept
    parsing (measurable at thousands of requests a second)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        renderer = renderers[0]
        return renderer, renderer.media_type
