"""Bad input on every write endpoint: 400 (413 when huge) with field paths, and nothing written:
no row, no audit entry, no version bump (db_state covers all three)."""

import pytest

from .conftest import assert_error, create_flag, create_segment, db_state

pytestmark = pytest.mark.django_db

BAD_RULE = [{"type": "custom", "field": "plan", "operator": "equalz", "value": "x"}]

# (method, path, body, expected field paths)
CASES = [
    # POST /api/flags
    ("post", "/api/flags", {}, ["name"]),
    ("post", "/api/flags", {"name": 5, "enabled": "yes-please"}, ["name", "enabled"]),
    ("post", "/api/flags", {"name": "x", "tags": "web"}, ["tags"]),
    ("post", "/api/flags", {"name": "x", "key": "bad key!"}, ["key"]),
    ("post", "/api/flags", {"name": "x", "kind": "ternary"}, ["kind"]),
    ("post", "/api/flags", {"name": "x", "variants": [{"key": "a", "weight": "heavy"}]}, ["variants[0].weight"]),
    ("post", "/api/flags", {"name": "x", "rules": {"type": "geo"}}, ["rules"]),
    ("post", "/api/flags", {"name": "x", "rules": ["geo"]}, ["rules[0]"]),
    ("post", "/api/flags", {"name": "x", "enabled": True, "rules": BAD_RULE}, ["rules[0].operator"]),
    ("post", "/api/flags", {"name": "x", "rules": [{}, {"type": "geo", "operator": "in", "value": "US"}]}, ["rules[0].type", "rules[1].value"]),
    ("post", "/api/flags", {"name": "x", "enabeld": True}, ["enabeld"]),
    ("post", "/api/flags", {"name": "x", "environment": "nope"}, ["environment"]),
    ("post", "/api/flags", [{"name": "x"}], [""]),
    # PUT / PATCH /api/flags/{key}
    ("put", "/api/flags/existing", {"name": "x"}, ["enabled"]),
    ("put", "/api/flags/existing", {"name": "x", "enabled": True, "rules": BAD_RULE}, ["rules[0].operator"]),
    ("patch", "/api/flags/existing", {"enabled": "sometimes"}, ["enabled"]),
    ("patch", "/api/flags/existing", {"rules": BAD_RULE}, ["rules[0].operator"]),
    ("patch", "/api/flags/existing", {"rules": [{"type": "segment", "operator": "in", "value": ["no-such-segment"]}]}, ["rules[0].value[0]"]),
    ("patch", "/api/flags/existing", {"rules": [{"type": "flag", "field": "existing", "operator": "enabled"}]}, ["rules[0].field"]),
    ("patch", "/api/flags/existing", {"version": "one"}, ["version"]),
    ("patch", "/api/flags/existing", {"tags": [1, {"a": 2}]}, ["tags[0]", "tags[1]"]),
    # PATCH toggle, POST kill-switch / restore
    ("patch", "/api/flags/existing/toggle", {"enabled": "on-ish"}, ["enabled"]),
    ("patch", "/api/flags/existing/toggle", ["x"], [""]),
    ("post", "/api/flags/existing/kill-switch", {}, ["reason"]),
    ("post", "/api/flags/existing/kill-switch", {"reason": ""}, ["reason"]),
    ("post", "/api/flags/existing/kill-switch", {"reason": "r", "environments": "production"}, ["environments"]),
    ("post", "/api/flags/existing/kill-switch", {"reason": "r", "environments": ["nope"]}, ["environments"]),
    ("post", "/api/flags/existing/restore", {"environments": [1, []]}, ["environments[0]", "environments[1]"]),
    ("post", "/api/flags/existing/restore", {"environments": ["nope"]}, ["environments"]),
    # segments
    ("post", "/api/segments", {}, ["name", "conditions"]),
    ("post", "/api/segments", {"name": "s", "conditions": "premium"}, ["conditions"]),
    ("post", "/api/segments", {"name": "s", "conditions": BAD_RULE}, ["conditions[0].operator"]),
    ("put", "/api/segments/existing-segment", {"name": "s"}, ["conditions"]),
    ("patch", "/api/segments/existing-segment", {"conditions": 7}, ["conditions"]),
    ("patch", "/api/segments/existing-segment", {"key": "renamed"}, ["key"]),
    ("patch", "/api/segments/existing-segment", {"name": ["x"]}, ["name"]),
    ("patch", "/api/segments/existing-segment", {"conditions": BAD_RULE}, ["conditions[0].operator"]),
]


@pytest.fixture
def existing():
    create_segment("existing-segment", {"plan": "premium"})
    create_flag("existing", states={"production": {"enabled": True}})


def _ids(case):
    return f"{case[0]} {case[1]} {str(case[2])[:40]}"


@pytest.mark.parametrize("method, path, body, fields", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input__400_with_field_paths_and_nothing_written(editor_api, existing, method, path, body, fields):
    before = db_state()

    response = getattr(editor_api, method)(path + "?environment=production", body)

    error = assert_error(response, 400, "validation_error", *fields)
    assert error["message"].startswith(fields[0]) or fields[0] == ""
    assert db_state() == before


WRITE_ENDPOINTS = [
    ("post", "/api/flags"),
    ("put", "/api/flags/existing"),
    ("patch", "/api/flags/existing"),
    ("patch", "/api/flags/existing/toggle"),
    ("post", "/api/flags/existing/kill-switch"),
    ("post", "/api/flags/existing/restore"),
    ("post", "/api/segments"),
    ("put", "/api/segments/existing-segment"),
    ("patch", "/api/segments/existing-segment"),
    ("post", "/api/evaluate"),
    ("post", "/api/evaluate/bulk"),
]


@pytest.mark.parametrize("method, path", WRITE_ENDPOINTS)
def test_non_json_body__400_parse_error_and_nothing_written(editor_api, existing, method, path):
    before = db_state()

    response = getattr(editor_api, method)(path, '{"name": "x", ')

    assert_error(response, 400, "parse_error")
    assert db_state() == before


@pytest.mark.parametrize("method, path", WRITE_ENDPOINTS)
def test_huge_body__413_and_nothing_written(editor_api, existing, settings, method, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = db_state()
    body = '{"name": "x", "description": "' + "a" * 20_000 + '"}'

    response = getattr(editor_api, method)(path, body)

    assert_error(response, 413, "payload_too_large")
    assert db_state() == before


@pytest.mark.parametrize("method, path", WRITE_ENDPOINTS[:3])
def test_form_encoded_body__415_and_nothing_written(editor_api, existing, method, path):
    before = db_state()

    response = getattr(editor_api, method)(path, "name=x", content_type="application/x-www-form-urlencoded")

    assert_error(response, 415, "unsupported_media_type")
    assert db_state() == before


def test_deep_nesting__400_not_500(editor_api, existing):
    before = db_state()
    body = '{"name": "x", "rules": ' + "[" * 100_000 + "]" * 100_000 + "}"

    response = editor_api.post("/api/flags", body)

    assert response.status_code == 400
    assert db_state() == before


# ---- size and depth limits on every JSON endpoint (REST and OFREP, management and SDK keys) ----------

JSON_ENDPOINTS = [(method, path, "editor") for method, path in WRITE_ENDPOINTS if "evaluate" not in path] + [
    ("post", "/api/flags/existing/unarchive", "editor"),
    ("post", "/api/evaluate", "sdk"),
    ("post", "/api/evaluate/bulk", "sdk"),
    ("post", "/api/sdk/metrics", "sdk"),
    ("post", "/api/events", "sdk"),
    ("post", "/ofrep/v1/evaluate/flags", "sdk"),
    ("post", "/ofrep/v1/evaluate/flags/existing", "sdk"),
]


@pytest.fixture
def as_who(editor_api, sdk_api):
    return {"editor": editor_api, "sdk": sdk_api}


def assert_refused(response, path, status, code):
    """The REST error shape, or OFREP's on /ofrep/ (413 -> GENERAL, unparsable -> PARSE_ERROR)."""
    if path.startswith("/ofrep/"):
        assert response.status_code == status, response.content[:300]
        assert response.json()["errorCode"] == ("PARSE_ERROR" if code == "parse_error" else "GENERAL")
    else:
        assert_error(response, status, code)


@pytest.mark.parametrize("method, path, who", JSON_ENDPOINTS)
def test_body_over_the_configured_limit__413_and_nothing_written(as_who, existing, settings, method, path, who):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # the real one (Django's default, 2.5 MB), not lowered
    before = db_state()
    body = '{"name": "x", "reason": "r", "context": {"k": "' + "a" * limit + '"}}'

    response = getattr(as_who[who], method)(path, body)

    assert_refused(response, path, 413, "payload_too_large")
    assert db_state() == before


@pytest.mark.parametrize("method, path, who", JSON_ENDPOINTS)
def test_content_length_over_the_limit__413_before_reading(as_who, existing, settings, method, path, who):
    before = db_state()
    claimed = str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)

    response = getattr(as_who[who], method)(path, '{"name": "x"}', CONTENT_LENGTH=claimed)

    assert_refused(response, path, 413, "payload_too_large")
    assert db_state() == before


def test_body_at_the_limit__parsed(sdk_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    create_flag("small", states={"production": {"enabled": True}})
    prefix, suffix = '{"flagId": "small", "context": {"k": "', '"}}'
    body = prefix + "a" * (10_000 - len(prefix) - len(suffix)) + suffix

    assert len(body) == 10_000
    assert sdk_api.post("/api/evaluate", body).status_code == 200
    assert_error(sdk_api.post("/api/evaluate", body[:-2] + 'a"}}'), 413, "payload_too_large")


@pytest.mark.parametrize("method, path, who", JSON_ENDPOINTS)
@pytest.mark.parametrize("depth", [10_000, 65])
def test_deeply_nested_json__400_and_nothing_written(as_who, existing, method, path, who, depth):
    """10,000 levels overflow json's recursion; 65 pass it but exceed the parser's own limit (64),
    which holds whatever the stack depth of the endpoint."""
    before = db_state()
    nested = "[" * (depth - 2) + "]" * (depth - 2)  # inside {"context": {"k": ...}}: depth levels in all
    body = '{"name": "x", "reason": "r", "flagId": "existing", "context": {"k": ' + nested + "}}"

    response = getattr(as_who[who], method)(path, body)

    assert_refused(response, path, 400, "parse_error")
    assert db_state() == before


def test_nesting_at_the_limit__accepted(sdk_api):
    create_flag("small", states={"production": {"enabled": True}})
    nested = "[" * 62 + "]" * 62  # 64 levels with the body object and the context object

    response = sdk_api.post("/api/evaluate", '{"flagId": "small", "context": {"k": ' + nested + "}}")

    assert response.status_code == 200


@pytest.mark.parametrize("method, path, body, field", [
    ("post", "/api/flags", {"name": "n" * 1_000_000}, "name"),
    ("post", "/api/flags", {"name": "x", "key": "k" * 1_000_000}, "key"),
    ("post", "/api/flags", {"name": "x", "description": "d" * 10_001}, "description"),
    ("post", "/api/flags", {"name": "x", "tags": ["t" * 1_000_000]}, "tags[0]"),
    ("post", "/api/flags", {"name": "x", "tags": ["t"] * 101}, "tags"),
    ("post", "/api/flags", {"name": "x", "salt": "s" * 1_000_000}, "salt"),
    ("patch", "/api/flags/existing", {"description": "d" * 1_000_000}, "description"),
    ("patch", "/api/flags/existing", {"rules": [{"type": "custom", "field": "email", "operator": "matches",
                                                 "value": "a" * 1_000_000}]}, "rules[0].value"),
    ("patch", "/api/flags/existing", {"rules": [{"type": "user", "operator": "in",
                                                 "value": ["u"] * 10_001}]}, "rules[0].value"),
    ("post", "/api/flags/existing/kill-switch", {"reason": "r" * 1_000_000}, "reason"),
    ("post", "/api/segments", {"name": "s", "description": "d" * 10_001, "conditions": {"plan": "p"}}, "description"),
    ("post", "/api/segments", {"name": "s" * 1_000_000, "conditions": {"plan": "p"}}, "name"),
])
def test_huge_string_in_a_bounded_field__400_with_its_path(editor_api, existing, method, path, body, field):
    before = db_state()

    response = getattr(editor_api, method)(path + "?environment=production", body)

    assert_error(response, 400, "validation_error", field)
    assert db_state() == before
