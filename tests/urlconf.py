"""Every route of the URL conf, for the tests that must cover them all (the fuzz test, the
permission matrix): a route added later is found without touching those tests."""

import re

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern


def url_routes():
    """[(template, view callback)] of every URL pattern; regex patterns read as "<path:name>"."""
    found = []

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                route = str(pattern.pattern)
                if isinstance(pattern.pattern, RegexPattern):  # "^v1/x/(?P<key>...)$" -> "v1/x/<path:key>"
                    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<path:\1>", route.lstrip("^").rstrip("$"))
                found.append(("/" + prefix + route, pattern.callback))

    walk(get_resolver().url_patterns, "")
    return found


def view_class(callback):
    return getattr(callback, "cls", None) or getattr(callback, "view_class", None)
