"""OpenAPI postprocessing (drf-spectacular POSTPROCESSING_HOOKS): the REST API's one error shape as a
reusable component, on every /api/ operation's 4xx/5xx responses, as flagsite/api/exceptions.py
answers them. OFREP operations document their own error shapes (flags/ofrep.py)."""

ERROR_COMPONENT = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every REST error: {\"error\": {\"code\", \"message\", \"fields\"}}.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "validation_error, parse_error, not_authenticated, "
                         "permission_denied, not_found, conflict, approval_required (a protected environment: "
                         "propose the change at changeRequests), method_not_allowed, unsupported_media_type, "
                         "payload_too_large, throttled, unavailable"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "Field path (e.g. rules[2].operator) -> messages; empty when not about a field.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
                "changeRequests": {"type": "string", "description": "With approval_required: the route where "
                                   "the change is proposed as a change request (four eyes)."},
            },
            "required": ["code", "message", "fields"],
        },
    },
    "required": ["error"],
}
DESCRIPTIONS = {
    "400": "Invalid input (fields name the paths)",
    "401": "No key, or an unknown or revoked one",
    "403": "Not allowed (missing permission, or an SDK key outside its scope)",
    "404": "Not found",
    "405": "Method not allowed",
    "406": "Not acceptable: the Accept header allows no JSON answer",
    "409": "Conflict: a stale version (If-Match / version), an existing key, a referenced object, or a protected "
           "environment (code approval_required: propose it as a change request)",
    "413": "Request body too large",
    "415": "Unsupported media type (send JSON)",
    "429": "Throttled; see Retry-After",
    "503": "A dependency (database, cache) is unavailable",
}
WRITES = {"post", "put", "patch", "delete"}


def _statuses(path, method, operation):
    statuses = ["400", "401", "403", "405", "406", "429", "503"]
    if "{" in path:
        statuses.append("404")
    if method in WRITES and not path.startswith("/api/evaluate"):
        statuses.append("409")
    if "requestBody" in operation:
        statuses += ["413", "415"]
    return statuses


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[ERROR_COMPONENT] = ERROR_SCHEMA
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if path == "/api/health":
                health = responses.get("200", {}).get("content")
                responses.setdefault("503", {"description": "A dependency failed (checks say which); "
                                             "the body also carries error", "content": health})
                continue
            for status in _statuses(path, method, operation):
                responses.setdefault(status, {
                    "description": DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ref}},
                })
    return result
