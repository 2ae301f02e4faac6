"""Malformed requests against every REST and OFREP endpoint: never a 500, every 4xx in the
project's error shape, and nothing written unless the answer was a 2xx write (which must then be
audited).

The endpoints are read from the URL conf (and cross-checked against the OpenAPI schema), so an
endpoint added later is fuzzed without touching this file. Requests go through DRF's in-process
test client, many per hypothesis example. Hypothesis runs derandomized (the same requests on every
run, in CI too): it draws a seed per request, from which the plain-Python generators below build
the request (hypothesis' own strategies cost milliseconds a draw: ten thousand requests would take
minutes). Identities: a management token with editing permissions and
an SDK key, plus a few requests with no key or an unknown one.

What is sent: JSON of the wrong shape and type, near-valid bodies with one to three fields broken
(unknown rule types and operators, catastrophic regular expressions, NaN, lone surrogates, NUL
bytes), bytes that are not JSON or not UTF-8, deeply nested JSON, bodies over the size limit,
wrong or missing content types and lengths, other methods, junk query parameters and path keys,
and bad headers (If-Match, If-None-Match, Accept, Accept-Encoding, Content-Length, X-Request-ID,
Origin, X-API-Key).

Checks after every request: no 5xx; a 4xx answers JSON in the REST error shape (OFREP's own on
/ofrep/); a cheap fingerprint of the database (counts, versions, last updates) is unchanged unless
the answer was a 2xx to a write, which must have added an audit entry. The full World snapshot
(tests/conftest.py) is compared at the end of every batch and after each accepted write.
"""

import gzip
import io
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from audit.chain import verify_chain
from audit.models import AuditEntry
from flags import snapshot
from flags.management.commands.load_demo_data import FLAGS as DEMO_FLAG_SPECS
from flags.models import ApiKey, Environment, Flag, FlagState
from segments.models import Segment
from flags import services as flag_services
from tests.api.conftest import SYSTEM, create_flag, create_segment
from tests.conftest import World
from tests.urlconf import url_routes, view_class

pytestmark = pytest.mark.django_db

MIN_REQUESTS = 10_000
BATCH = 50  # requests per hypothesis example
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", MIN_REQUESTS // BATCH + 4))
BODY_LIMIT = 64 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE during the fuzz: "huge" bodies stay cheap to send
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
EXPECTED_ROUTES = {
    "/api/health", "/api/schema", "/api/docs", "/api/flags", "/api/flags/<str:key>",
    "/api/flags/<str:key>/toggle", "/api/flags/<str:key>/kill-switch", "/api/flags/<str:key>/restore",
    "/api/flags/<str:key>/unarchive", "/api/flags/<str:key>/explain", "/api/evaluate", "/api/evaluate/bulk", "/api/sdk/snapshot",
    "/api/segments", "/api/segments/<str:key>", "/api/audit", "/api/audit/flag/<str:key>",
    "/api/analytics/flags/<str:key>", "/api/analytics/metrics", "/api/sdk/metrics",
    "/api/events",
    "/api/change-requests", "/api/change-requests/<int:change_request_id>",
    "/api/change-requests/<int:change_request_id>/amend", "/api/change-requests/<int:change_request_id>/rebase",
    "/api/change-requests/<int:change_request_id>/withdraw", "/api/change-requests/<int:change_request_id>/review",
    "/api/change-requests/<int:change_request_id>/apply", "/api/change-requests/<int:change_request_id>/schedule",
    "/api/environments/<str:environment>/protection",
    "/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/<path:key>", "/ofrep/v1/configuration",
}


# ---- the endpoints, from the URL conf ------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    template: str  # "/api/flags/<str:key>"
    methods: tuple  # the methods its view answers
    writes: bool  # a 2xx to a write method may change the database (evaluation and reports may not)


def api_routes():
    """Every /api/ and /ofrep/ route of the URL conf with the HTTP methods its view implements."""
    routes = []
    for template, callback in url_routes():
        if not template.startswith(("/api/", "/ofrep/")):
            continue
        view = view_class(callback)
        names = view.http_method_names if view else ["get"]
        methods = tuple(sorted(name.upper() for name in names if view is None or hasattr(view, name)))
        if "GET" in methods and "HEAD" not in methods:
            methods += ("HEAD",)
        writes = not getattr(view, "sdk_allowed", False) and "/api/schema" != template
        routes.append(Route(template, methods, writes))
    return sorted(routes, key=lambda route: route.template)


ROUTES = api_routes()
# Routes with more write methods come up more often: that is where bodies, headers and queries meet.
WEIGHTED_ROUTES = [route for route in ROUTES for _ in range(1 + sum(m in WRITE_METHODS for m in route.methods))]
PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
KEYS = ["target", "target", "target", "mv", "mv", "vip", "vip", "old", "ghost", "x" * 129, "a" * 2000, "%00",
        "tar%00get", "%ff%fe", "%C3%A9t%C3%A9", "%E2%80%AE", "..", "%2e%2e", "-x", "a.b", "%20", "%F0%9F%9A%A9",
        "%u0041", "%ED%A0%80", "%", "a%0Ab", "%0D%0A", "%09"]
PATH_KEYS = KEYS + ["target/extra", "a/b/c", "%2F", "target/"]


# ---- bodies (plain Python, from a seeded random.Random) -------------------------------------------

FIELDS = ["key", "name", "description", "tags", "kind", "variants", "enabled", "rules", "environment", "states",
          "version", "reason", "environments", "conditions", "flagId", "userId", "context", "flagIds", "salt",
          "stickiness", "evaluations", "targetingKey", "id", "archived", "killed", "count", "value", "weight",
          "overrides", "variant", "caseInsensitive", "plan", "country", "ip", "userAgent", "device", "email",
          "appVersion", "signupDate", "locale", "age", "sessionId", "userId", "events", "event", "timestamp",
          "properties"]
WORDS = ["production", "staging", "development", "nope", "target", "mv", "vip", "ghost", "old", "US", "DE",
         "premium", "in", "equals", "matches", "(a+)+$", "(a|aa)*$", "(.*)*", "^[", "", " ", "\x00", "a\x00b",
         "\ud800", "\udfff", "NaN", "a" * 300, "on", "off", "control", "treatment", "true", "1", "mobile",
         "10.0.0.0/8", "1.2.3", "2025-01-01", "\u202e", "\U0001F6A9", "é", "user-1", "__proto__", "constructor",
         "x" * 5000, "203.0.113.9", "::1", "999.1.1.1", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)", "Googlebot/2.1",
         "2.1.0-beta.1", "v1", "ops@flagsite.dev", "de-DE", "new-checkout", "pricing-experiment", "beta-dashboard"]
NUMBERS = [0, 1, -1, 2, 50, 100, 101, 1000, 10**6, 10**6 + 1, 2**31, 2**63, 2**64, -(2**63), 10**30, 0.5, -0.0,
           1e308, 1e-308, float("nan"), float("inf"), float("-inf"), 99.999]
RULE_TYPES = ["geo", "device", "percentage", "user", "custom", "all", "any", "not", "segment", "flag", "bogus", ""]
OPERATORS = ["in", "not_in", "is", "is_not", "equals", "not_equals", "contains", "starts_with", "matches",
             "less_than", "enabled", "disabled", "variant_in", "gt", "lte", "before", "after", "semver_gt",
             "in_cidr", "exists", "not_exists", "equalz", "", "MATCHES", "__class__", "__init__"]
REGEXES = ["(a+)+$", "(a|aa)*$", "(.*)*$", "((a+))+", "(\\w+\\s?)*$", "a" * 300, "[", "^ok$", "\\d+", "(?P<x",
           "x{2,1}", ".*.*.*=", "(?i)é+", "\\", "(?=a)"]
RULE = [{"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}]
DEMO_FLAGS = [spec["key"] for spec in DEMO_FLAG_SPECS]
VARIANTS = [{"key": "control", "weight": 50, "value": "a"}, {"key": "treatment", "weight": 50, "value": "b"}]
TEMPLATES = {  # a valid body per route: the starting point of the near-valid mutations
    "/api/flags": {"name": "Fuzz flag", "key": "fuzz-flag", "enabled": True, "rules": RULE, "tags": ["web"]},
    "/api/flags/<str:key>": {"name": "Target", "enabled": True, "rules": RULE, "description": "d"},
    "/api/flags/<str:key>/toggle": {"enabled": False},
    "/api/flags/<str:key>/kill-switch": {"reason": "fuzz", "environments": ["production"]},
    "/api/flags/<str:key>/restore": {"reason": "fuzz", "environments": ["production"]},
    "/api/flags/<str:key>/unarchive": {},
    "/api/segments": {"name": "Fuzz segment", "key": "fuzz-segment", "conditions": {"plan": "premium"}},
    "/api/segments/<str:key>": {"name": "VIP", "conditions": RULE},
    "/api/evaluate": {"flagId": "target", "userId": "user-1", "context": {"plan": "premium", "ip": "203.0.113.9",
                      "userAgent": "Mozilla/5.0 (iPhone)", "email": "a@flagsite.dev", "appVersion": "2.1.0"}},
    "/api/evaluate/bulk": {"userId": "user-1", "flagIds": ["target", "mv"], "context": {"plan": "premium"}},
    "/api/sdk/metrics": {"evaluations": [{"flagId": "target", "variant": None, "enabled": True, "count": 3}]},
    "/api/events": {"events": [{"event": "purchase", "userId": "user-1", "value": 9.5, "id": "evt-1",
                                "timestamp": "2025-01-01T00:00:00Z", "properties": {"plan": "premium"}}]},
    "/ofrep/v1/evaluate/flags": {"context": {"targetingKey": "user-1", "plan": "premium"}},
    "/ofrep/v1/evaluate/flags/<path:key>": {"context": {"targetingKey": "user-1", "plan": "premium"}},
}


def text(rnd):
    kind = rnd.random()
    if kind < 0.6:
        return rnd.choice(WORDS)
    if kind < 0.8:
        return "".join(chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(0, 0x110000)]))
                       for _ in range(rnd.randrange(0, 8)))
    odd = "a\x00\x1f\u0085\u2028\ud800\udbff\udc00\ufeff\U0010ffff "
    return "".join(rnd.choice(odd) for _ in range(rnd.randrange(1, 5)))


def scalar(rnd):
    return rnd.choice([None, True, False, rnd.choice(NUMBERS), rnd.randrange(-1000, 1000), text(rnd), text(rnd)])


def json_value(rnd, depth=0):
    kind = rnd.random()
    if depth > 3 or kind < 0.55:
        return scalar(rnd)
    if kind < 0.75:
        return [json_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 4))]
    return {rnd.choice(FIELDS + WORDS): json_value(rnd, depth + 1) for _ in range(rnd.randrange(0, 4))}


def rule(rnd, depth=0):
    if rnd.random() < 0.1:
        return json_value(rnd, depth + 2)
    result = {"type": rnd.choice(RULE_TYPES)}
    for name in rnd.sample(["operator", "field", "value", "caseInsensitive", "rules", "rule", "variants", "salt",
                            "description", "bogus"], rnd.randrange(0, 5)):
        if name == "operator":
            result[name] = rnd.choice(OPERATORS) if rnd.random() < 0.85 else scalar(rnd)
        elif name == "field":
            result[name] = rnd.choice(["plan", "country", "userId", "target", "mv", "email", "", "old"])
        elif name == "value":
            result[name] = rnd.choice([rnd.choice(REGEXES), [rnd.choice(WORDS) for _ in range(rnd.randrange(1, 4))],
                                       json_value(rnd, depth + 1), rnd.choice(NUMBERS)])
        elif name == "rules" and depth < 3:
            result[name] = [rule(rnd, depth + 1) for _ in range(rnd.randrange(0, 3))]
        elif name == "rule" and depth < 3:
            result[name] = rule(rnd, depth + 1)
        elif name == "variants":
            result[name] = rnd.choice([VARIANTS, [{"key": text(rnd), "weight": rnd.choice(NUMBERS)}],
                                       json_value(rnd, depth + 1)])
        else:
            result[name] = scalar(rnd)
    return result


def rules(rnd):
    if rnd.random() < 0.15:
        return json_value(rnd)
    return [rule(rnd) for _ in range(rnd.randrange(0, 4))]


def near_valid(rnd, template):
    """The route's valid body, mostly with one to three fields broken, dropped, added or replaced."""
    body = json.loads(json.dumps(TEMPLATES.get(template, {})))
    for _ in range(rnd.choice([0, 1, 1, 1, 2, 3])):  # none: a valid request, so headers and queries get read
        field = rnd.choice(sorted(set(body)) + FIELDS) if body else rnd.choice(FIELDS)
        how = rnd.choice(["value", "value", "rules", "drop", "nest", "scalar"])
        if how == "drop":
            body.pop(field, None)
        elif how == "rules":
            body[field] = rules(rnd)
        elif how == "scalar":
            body[field] = scalar(rnd)
        elif how == "nest" and isinstance(body.get(field), (dict, list)) and body[field]:
            inner = body[field]
            target = inner[0] if isinstance(inner, list) else inner
            if isinstance(target, dict):
                target[rnd.choice(FIELDS + WORDS)] = rnd.choice([json_value(rnd), rules(rnd)])
            else:
                inner.append(json_value(rnd))
        else:
            body[field] = json_value(rnd)
    return body


def encode(value):
    return json.dumps(value, allow_nan=True).encode()


def nested(depth, kind):
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def raw_body(rnd, template):
    """Bodies that are not well-formed JSON of the right shape, as bytes."""
    kind = rnd.choice(["binary", "utf8", "nul", "deep", "huge", "numbers", "misc", "misc"])
    field = rnd.choice(FIELDS).encode()
    if kind == "binary":
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 48)))
    if kind == "utf8":
        bad = rnd.choice([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80abc", b"\xc0\xaf"])
        return b'{"' + field + b'": "' + bad + b'", "name": "x", "flagId": "target"}'
    if kind == "nul":
        value = rnd.choice(["a\x00b", "a\\u0000b", "\\u0000"])
        base = json.dumps(TEMPLATES.get(template, {}))[:-1]
        separator = ", " if len(base) > 1 else ""
        return f'{base}{separator}"{field.decode()}": "{value}"}}'.encode()
    if kind == "deep":
        depth = rnd.choice([100, 500, 800, 900, 950, 970, 990, 1000, 3000, 10_000, 100_000])
        inner = nested(depth, rnd.choice(["list", "dict"]))
        name = rnd.choice([b"context", b"rules", b"conditions", b"variants", b"value", b"evaluations", b"name",
                           b"states", b"tags"])
        return inner if rnd.random() < 0.3 else b'{"' + name + b'": ' + inner + b', "flagId": "target"}'
    if kind == "huge":
        size = rnd.choice([BODY_LIMIT - 200, BODY_LIMIT + 1, 3 * BODY_LIMIT])
        name = rnd.choice([b"name", b"description", b"reason", b"flagId", b"userId", b"key", b"junk"])
        return b'{"' + name + b'": "' + b"a" * size + b'"}'
    if kind == "numbers":
        number = rnd.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0", b"1e-400", b"9" * 5000, b"0x10",
                             b"01", b"1.5", b"+1", b".5", b"-9223372036854775809", b"18446744073709551616"])
        return b'{"' + field + b'": ' + number + b', "name": "x", "reason": "r", "flagId": "target"}'
    return rnd.choice([
        b"", b" ", b"null", b"[]", b'""', b"0", b"true", b"{", b"}", b"{}{}", b'{"a": 1,}', b"{'name': 'x'}",
        b'\xef\xbb\xbf{"name": "bom"}', '{"name": "utf16"}'.encode("utf-16"), b'{"name": "x", "name": 5}',
        b'{"name": "\\ud800"}', b'{"reason": "\\udfff"}', b'{"flagId": "\\ud83d"}', b'{"conditions": "\\ud800"}',
        b'{"name": "\\ud800", "conditions": {"plan": "\\udfff"}}', b'{"key": "\\ud800", "name": "x"}',
        b"name=x&enabled=true", b"--boundary\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--boundary--",
        b'{"context": {"targetingKey": "\\u0000"}}', b'{"context": {"targetingKey": 5}}', b"\x00",
        b'{"context": {"\\ud800": "\\udfff"}, "flagId": "target"}',
        b'{"reason": "\\u0000", "environments": ["\\u0000"]}',
    ])


def body_for(rnd, template):
    kind = rnd.random()
    if kind < 0.15:
        return encode({rnd.choice(FIELDS): json_value(rnd) for _ in range(rnd.randrange(0, 5))}
                      if rnd.random() < 0.7 else json_value(rnd))
    if kind < 0.65:
        return encode(near_valid(rnd, template))
    if kind < 0.95:
        return raw_body(rnd, template)
    return b""


CONTENT_TYPES = [
    "application/json; charset=utf-8", "application/json; charset=latin-1", "application/json; charset=utf-16",
    "application/json; charset=bogus", "text/plain", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=boundary", "multipart/form-data", "application/vnd.api+json", "*/*", "",
    "application/json;;;", "\u00e9/\u00e9", "application/xml", None]  # None: no Content-Type at all
QUERY_NAMES = ["environment", "environment", "limit", "offset", "hard", "archived", "enabled", "tag", "search",
               "timeRange", "action", "format", "key", "since", "flagId", "lang", "version"]
QUERY_VALUES = ["production", "staging", "development", "nope", "", "-1", "0", "1", "abc", "9" * 5000, "true", "maybe",
                "1h", "24h", "7d", "99y", "%00", "a%00b", "%ff", "%ED%A0%80", "json", "yaml", "openapi", "api",
                "x" * 3000, "%25", "+", "&&", "=", "1e3"]
HEADERS = {
    "HTTP_IF_MATCH": ['"1"', "*", 'W/"2"', '"abc"', "9" * 5000, "\u00b2", "\u0661\u0662", '"-1"', '"1", "2"',
                      "\x00", '"' + "1" * 30 + '"', "-0", '"\u00b3"', "1_000", " 1 ", "\u00bd", "\uff11"],
    "HTTP_IF_NONE_MATCH": ["*", '"production-1"', 'W/"x"', "", ",,,", "\x00", "a" * 5000],
    "HTTP_ACCEPT": ["application/json", "text/html", "application/xml", "*/*", "", "garbage;;;q=x",
                    "application/json; version=99", "application/vnd.oai.openapi", "application/yaml"],
    "HTTP_ACCEPT_ENCODING": ["gzip", "identity", "br;q=x", "*"],
    "CONTENT_LENGTH": ["-1", "abc", "99999999999999999999", "0", ""],
    "HTTP_X_REQUEST_ID": ["\x00", "a" * 5000, "\u202e", "ok-1", "\r\n"],
    "HTTP_X_API_KEY": ["", "nope", "\x00"],
    "HTTP_ORIGIN": ["http://evil.example", "null", "\x00", "http://localhost:3001"],
    "HTTP_X_FORWARDED_FOR": ["::::", "1.2.3.4, junk", ""],
    "HTTP_CONTENT_ENCODING": ["gzip", "deflate"],
    "HTTP_ACCEPT_LANGUAGE": ["xx", "\x00", "de-DE;q=x"],
}
OTHER_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "CONNECT"]


@dataclass
class Spec:
    method: str
    route: Route
    path: str
    identity: str
    body: bytes
    content_type: object
    extra: dict

    def __repr__(self):
        body = self.body[:200] + (b"..." if len(self.body) > 200 else b"")
        extra = {name: (value[:60] if isinstance(value, str) else value) for name, value in self.extra.items()}
        return (f"{self.method} {self.path[:300]} as={self.identity} content_type={self.content_type!r} "
                f"extra={extra!r} body={body!r} ({len(self.body)} bytes)")


def path_key(rnd, route, converter):
    """Mostly a key that exists for this route (so the body gets validated), else junk."""
    if rnd.random() < 0.7:
        if "/segments/" in route.template:
            return "vip"
        return rnd.choice(["target", "target", "mv", "old", rnd.choice(DEMO_FLAGS)])
    return rnd.choice(PATH_KEYS if converter == "path" else KEYS)


def make_request(seed):
    rnd = random.Random(seed)
    route = rnd.choice(WEIGHTED_ROUTES)
    unsafe = [method for method in route.methods if method in WRITE_METHODS]
    if rnd.random() < 0.1:
        method = rnd.choice(OTHER_METHODS)
    elif unsafe and rnd.random() < 0.7:
        method = rnd.choice(unsafe)
    else:
        method = rnd.choice(route.methods)
    path = PATH_PARAM.sub(lambda m: path_key(rnd, route, m.group(1)), route.template)
    query = [(rnd.choice(QUERY_NAMES), rnd.choice(QUERY_VALUES)) for _ in range(rnd.choice([0, 0, 0, 1, 1, 2, 3]))]
    if query:
        path += "?" + "&".join(f"{name}={value}" for name, value in query)
    sdk_route = route.template.startswith(("/ofrep/", "/api/evaluate", "/api/sdk/", "/api/events"))
    identities = (["sdk"] * 8 + ["editor"] * 3) if sdk_route else (["editor"] * 10 + ["sdk"])
    identity = rnd.choice(identities) if rnd.random() < 0.92 else rnd.choice(["none", "bad"])
    body = body_for(rnd, route.template) if method not in ("GET", "HEAD") or rnd.random() < 0.2 else b""
    extra = {name: rnd.choice(HEADERS[name]) for name in rnd.sample(sorted(HEADERS), rnd.choice([0, 0, 1, 1, 2]))}
    if rnd.random() < 0.5:  # the conditional headers where they matter: updates, snapshots, OFREP bulk
        name = "HTTP_IF_MATCH" if method in ("PUT", "PATCH") else "HTTP_IF_NONE_MATCH"
        extra[name] = rnd.choice(HEADERS[name])
    content_type = "application/json" if rnd.random() < 0.75 else rnd.choice(CONTENT_TYPES)
    return Spec(method, route, path, identity, body, content_type, extra)





# ---- checks ----------------------------------------------------------------------------------------


def world():
    """World.snapshot() (rows, audit entries, environment versions) plus the flag and key rows."""
    return {
        **World.snapshot(),
        "flag_rows": list(Flag.objects.order_by("pk").values_list(
            "key", "name", "description", "tags", "kind", "variants", "salt", "stickiness", "archived")),
        "api_keys": list(ApiKey.objects.order_by("pk").values_list("pk", "revoked_at")),
    }


def fingerprint_sql():
    tables = {name: model._meta.db_table for name, model in (
        ("audit", AuditEntry), ("flag", Flag), ("state", FlagState), ("segment", Segment), ("env", Environment),
        ("key", ApiKey))}
    return ("SELECT (SELECT COUNT(*) FROM {audit}), (SELECT COUNT(*) FROM {flag}),"
            " (SELECT MAX(updated_at) FROM {flag}), (SELECT COUNT(*) FROM {state}), (SELECT MAX(updated_at) FROM {state}),"
            " (SELECT COALESCE(SUM(version), 0) FROM {state}), (SELECT COUNT(*) FROM {segment}),"
            " (SELECT MAX(updated_at) FROM {segment}), (SELECT COALESCE(SUM(version), 0) FROM {env}),"
            " (SELECT COUNT(*) FROM {key} WHERE revoked_at IS NULL)").format(**tables)


def fingerprint(sql):
    """One query: what any write (through the services or not) moves."""
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def decoded(response):
    content = response.content
    if response.get("Content-Encoding") == "gzip":
        content = gzip.decompress(content)
    return content


def check_shape(spec, response):
    """No 5xx; a 4xx answers the project's JSON error shape (OFREP's own on /ofrep/)."""
    status = response.status_code
    assert status < 500, f"{status}: {decoded(response)[:500]!r}"
    if status < 400 or spec.method == "HEAD":
        return
    assert response["Content-Type"].startswith("application/json"), f"{status} as {response['Content-Type']}"
    body = json.loads(decoded(response))
    if spec.path.startswith("/ofrep/"):
        assert isinstance(body, dict) and isinstance(body.get("errorCode"), str), (status, body)
        assert isinstance(body.get("errorDetails"), str) and set(body) <= {"key", "errorCode", "errorDetails"}, body
        return
    assert isinstance(body, dict) and set(body) == {"error"}, (status, body)
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, (status, body)
    assert isinstance(error["code"], str) and error["code"], (status, body)
    assert isinstance(error["message"], str) and error["message"], (status, body)
    assert isinstance(error["fields"], dict), (status, body)
    for path, messages in error["fields"].items():
        assert isinstance(path, str) and isinstance(messages, list), (status, body)
        assert messages and all(isinstance(message, str) for message in messages), (status, body)


def _transaction_aborted():
    """PostgreSQL: a refused value (a NUL byte) aborts the test's transaction; the request's
    savepoint is then rolled back so the next request and the checks can query again."""
    if connection.vendor != "postgresql":
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return False
    except DatabaseError:
        return True


@pytest.fixture
def fuzz_clients(keys, settings):
    settings.FLAGS_RATE_LIMIT_MANAGEMENT = "off"
    settings.FLAGS_RATE_LIMIT_EVALUATE = "off"
    settings.FLAGS_OFREP_RATE_LIMIT = "off"
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BODY_LIMIT
    call_command("load_demo_data", stdout=io.StringIO())  # every rule type, for the evaluation paths
    create_segment("vip", {"plan": "vip"})
    create_flag("target", states={env: {"enabled": True, "rules": RULE} for env in ("production", "staging")})
    create_flag("regex", states={"production": {"enabled": True, "rules": [
        {"type": "custom", "field": "email", "operator": "matches", "value": "^[a-z.]+@flagsite\\.dev$"}]}})
    create_flag("mv", kind="multivariate", variants=VARIANTS, states={"production": {"enabled": True}})
    flag_services.flag_archive(actor=SYSTEM, flag=create_flag("old"))
    clients = {name: APIClient() for name in ("editor", "sdk", "none", "bad")}
    clients["editor"].credentials(HTTP_AUTHORIZATION=f"Bearer {keys['editor']}")
    clients["sdk"].credentials(HTTP_AUTHORIZATION=f"Bearer {keys['sdk']}")
    clients["bad"].credentials(HTTP_AUTHORIZATION="Bearer sdk_production_not-a-real-key")
    quiet = [logging.getLogger(name) for name in ("django.request", "flagsite.api.authentication", "flags")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)  # ten thousand expected 4xx warnings would cost seconds
    yield clients
    for logger, level in zip(quiet, levels):
        logger.setLevel(level)


def _as_template(path):
    return PATH_PARAM.sub(lambda m: f"<{m.group(2)}>", re.sub(r"\{(\w+)\}", r"<\1>", path))


def test_enumerated_routes__cover_the_url_conf_and_the_openapi_schema():
    from drf_spectacular.generators import SchemaGenerator

    templates = {route.template for route in ROUTES}
    assert EXPECTED_ROUTES <= templates, EXPECTED_ROUTES - templates
    routes = {_as_template(route.template): route for route in ROUTES}
    for path, operations in SchemaGenerator().get_schema(request=None, public=True)["paths"].items():
        route = routes.get(_as_template(path))
        assert route is not None, f"{path} is in the OpenAPI schema but not fuzzed"
        assert {method.upper() for method in operations} <= set(route.methods), (path, route.methods)


def test_fuzz__10k_malformed_requests__no_500_error_shape_and_no_unaudited_write(fuzz_clients):
    clients = fuzz_clients
    sql = fingerprint_sql()
    sent = {"requests": 0, "writes": 0, "statuses": {}}
    failures = {}  # (route, method, problem) -> the first request that showed it
    started, cpu = time.perf_counter(), time.process_time()

    def fail(spec, problem, detail):
        failures.setdefault((spec.route.template, spec.method, problem), f"{problem}: {detail}\n    {spec!r}")

    def send(spec):
        extra = dict(spec.extra)
        if spec.content_type is None:
            extra["CONTENT_TYPE"] = ""
        with transaction.atomic():
            response = clients[spec.identity].generic(
                spec.method, spec.path, spec.body, spec.content_type or "application/octet-stream", **extra)
            if _transaction_aborted():
                transaction.set_rollback(True)
        return response

    # No shrinking: a failure is reported with its request (derandomized, so it reproduces), and
    # every distinct failure of the run is listed at once.
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(seeds=st.lists(st.integers(0, 2**64 - 1), min_size=BATCH, max_size=BATCH))
    def run(seeds):
        # Hypothesis repeats its simplest draws (all zeros, boundaries) many times over: the example's
        # ordinal is mixed into each seed so that every request differs. Still deterministic: the
        # examples come in the same order on every run.
        sent["examples"] = example = sent.get("examples", 0) + 1
        batch = [make_request(f"{seed}:{example}:{index}") for index, seed in enumerate(seeds)]
        snapshot.reset()
        cache.clear()
        with transaction.atomic():  # every example starts from the same data
            baseline, mark = world(), fingerprint(sql)
            for spec in batch:
                sent["requests"] += 1
                try:
                    response = send(spec)
                except Exception as exc:  # the test client re-raises what no handler answered: a 500
                    fail(spec, f"500 {type(exc).__name__}", str(exc)[:300])
                    baseline, mark = world(), fingerprint(sql)
                    continue
                sent["statuses"][response.status_code] = sent["statuses"].get(response.status_code, 0) + 1
                try:
                    check_shape(spec, response)
                except AssertionError as exc:
                    fail(spec, f"{response.status_code} shape", str(exc)[:500])
                now = fingerprint(sql)
                if now == mark:
                    continue
                wrote = 200 <= response.status_code < 300 and spec.method in WRITE_METHODS and spec.route.writes
                if not wrote:
                    fail(spec, f"{response.status_code} wrote", f"the database changed: {mark} -> {now}")
                elif now[0] <= mark[0]:
                    fail(spec, f"{response.status_code} unaudited", f"changed with no audit entry: {mark} -> {now}")
                sent["writes"] += 1
                baseline, mark = world(), now
            if world() != baseline:
                failures.setdefault(("batch", "", "wrote"), "a request of this batch wrote unnoticed:\n    "
                                    + "\n    ".join(repr(spec) for spec in batch))
            if sent["writes"]:
                report = verify_chain()
                assert report.ok, report
            transaction.set_rollback(True)

    run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"\nfuzz: {sent['requests']} requests in {elapsed:.1f}s ({cpu:.1f}s CPU), {sent['writes']} audited "
          f"writes, statuses {dict(sorted(sent['statuses'].items()))}")
    assert not failures, f"{len(failures)} distinct failures:\n" + "\n".join(failures.values())
    assert sent["requests"] >= MIN_REQUESTS
