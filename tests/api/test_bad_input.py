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
