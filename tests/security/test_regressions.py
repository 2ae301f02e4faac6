"""What the REST fuzz (test_fuzz_rest.py) found, pinned one test per bug."""

import json
import subprocess
import sys
import time

import pytest

from analytics.hll import hash_user
from tests.api.conftest import assert_error, create_flag, db_state

pytestmark = pytest.mark.django_db

VARIANTS = [{"key": "control", "weight": 50, "value": "a"}, {"key": "treatment", "weight": 50, "value": "b"}]


# ---- a write answered 400 after it was committed --------------------------------------------------


@pytest.mark.parametrize("path, body", [
    ("/api/flags/target/kill-switch", {"reason": "incident"}),
    ("/api/flags/target/restore", {"reason": "fixed"}),
    ("/api/flags/target/unarchive", {}),
])
def test_kill_restore_unarchive__unknown_environment__400_and_nothing_written(editor_api, path, body):
    create_flag("target", states={"production": {"enabled": True}})
    before = db_state()

    response = editor_api.post(path + "?environment=nope", body)

    assert_error(response, 400, "validation_error", "environment")
    assert db_state() == before  # it used to kill / restore / unarchive, then answer 400


# ---- If-Match that str.isdigit() accepts but int() refuses -----------------------------------------


@pytest.mark.parametrize("header", ["\u00b2", '"\u00b3"', "9" * 5000, "\u0661", "\uff11", " 1 2 "])
def test_if_match__not_an_ascii_version__400_not_500(editor_api, header):
    create_flag("target", states={"production": {"enabled": True}})
    before = db_state()

    response = editor_api.patch("/api/flags/target?environment=production", {"enabled": False},
                                HTTP_IF_MATCH=header)

    assert_error(response, 400, "validation_error", "If-Match")
    assert db_state() == before


def test_if_match__ascii_version__still_checked(editor_api):
    create_flag("target", states={"production": {"enabled": True}})

    stale = editor_api.patch("/api/flags/target?environment=production", {"enabled": False}, HTTP_IF_MATCH='"7"')
    fresh = editor_api.patch("/api/flags/target?environment=production", {"enabled": False}, HTTP_IF_MATCH='W/"1"')

    assert_error(stale, 409, "conflict")
    assert fresh.status_code == 200


# ---- lone surrogates: a 500 on every write, a segfault in mmh3 on evaluation -----------------------


@pytest.mark.parametrize("method, path, body", [
    ("post", "/api/flags", '{"name": "\\ud800"}'),
    ("post", "/api/flags", '{"name": "x", "tags": ["\\udfff"]}'),
    ("post", "/api/segments", '{"name": "s", "conditions": {"plan": "\\ud83d"}}'),
    ("patch", "/api/flags/target", '{"description": "a\\udc00b"}'),
    ("post", "/api/flags/target/kill-switch", '{"reason": "\\ud800"}'),
    ("post", "/api/flags", '{"\\ud800": 1, "name": "x"}'),
])
def test_lone_surrogate_in_a_write__400_parse_error_and_nothing_written(editor_api, method, path, body):
    create_flag("target", states={"production": {"enabled": True}})
    before = db_state()

    response = getattr(editor_api, method)(path, body)

    assert_error(response, 400, "parse_error")
    assert "surrogate" in response.json()["error"]["message"]
    assert db_state() == before


@pytest.mark.parametrize("body", [
    '{"flagId": "ab", "userId": "\\ud800"}',
    '{"flagIds": ["ab"], "userId": "u\\udfff"}',
    '{"flagId": "ab", "context": {"userId": "\\ud800"}}',
])
def test_lone_surrogate_user_id__evaluate__400_not_a_crash(sdk_api, body):
    create_flag("ab", kind="multivariate", variants=VARIANTS, states={"production": {"enabled": True}})
    path = "/api/evaluate/bulk" if "flagIds" in body else "/api/evaluate"

    response = sdk_api.post(path, body)

    assert_error(response, 400, "parse_error")


def test_lone_surrogate__ofrep__parse_error(sdk_api):
    create_flag("ab", kind="multivariate", variants=VARIANTS, states={"production": {"enabled": True}})

    response = sdk_api.post("/ofrep/v1/evaluate/flags/ab", '{"context": {"targetingKey": "\\ud800"}}')

    assert response.status_code == 400
    assert response.json()["errorCode"] == "PARSE_ERROR"


def test_surrogate_pair_and_utf8__still_accepted(sdk_api):
    create_flag("ab", kind="multivariate", variants=VARIANTS, states={"production": {"enabled": True}})

    escaped = sdk_api.post("/api/evaluate", '{"flagId": "ab", "userId": "\\ud83d\\ude00-\\u00e9"}')
    raw = sdk_api.post("/api/evaluate", json.dumps({"flagId": "ab", "userId": "\U0001F600-é"}, ensure_ascii=False))

    assert escaped.status_code == raw.status_code == 200
    assert escaped.json()["variant"] == raw.json()["variant"]


def test_utf8_encoded_surrogate_bytes__400(sdk_api):
    response = sdk_api.post("/api/evaluate", b'{"flagId": "ab", "userId": "\xed\xa0\x80"}')

    assert_error(response, 400, "parse_error")


def test_engine_hash__lone_surrogate__no_crash_and_same_hash_for_valid_text():
    """In a child process: the bug killed the interpreter (SIGSEGV), which must not take pytest with it."""
    code = (
        "import mmh3\n"
        "from feature_flag_client.engine.bucketing import _hash, bucket, variant_bucket\n"
        "from feature_flag_client.engine import compile_snapshot\n"
        "for text in ('abc', 'é中\\U0001F600', ''):\n"
        "    assert _hash(text, 86028157, False) == mmh3.hash(text, 86028157, False)\n"
        "assert 1 <= bucket('flag', 'u\\ud800') <= 100 and 1 <= variant_bucket('f', '\\udfff', 7) <= 7\n"
        "snap = compile_snapshot(flags=[{'key': 'ab', 'enabled': True, 'kind': 'multivariate', 'rules': [\n"
        "    {'type': 'percentage', 'operator': 'less_than', 'value': 50}],\n"
        "    'variants': [{'key': 'a', 'weight': 1}, {'key': 'b', 'weight': 1}]}], segments={},\n"
        "    environment='production', version=1)\n"
        "print(snap.evaluate('ab', '\\ud800', {}).reason)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr


def test_analytics_hll__lone_surrogate_user__no_crash():
    code = "from analytics.hll import hash_user\nprint(hash_user('\\ud800'))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert hash_user("é") == hash_user("é") and hash_user("abc") != hash_user("abd")


# ---- /api/schema and /api/docs: errors in their own renderers, OPTIONS a 500 ----------------------


@pytest.mark.parametrize("method, path, extra, status", [
    ("post", "/api/schema", {}, 405),
    ("get", "/api/schema?format=nope", {}, 404),
    ("get", "/api/schema", {"HTTP_ACCEPT": "text/html"}, 406),
    ("post", "/api/docs", {}, 405),
    ("get", "/api/docs?format=nope", {}, 404),
    ("get", "/api/docs", {"HTTP_ACCEPT": "application/xml"}, 406),
])
def test_schema_and_docs_errors__json_error_shape(anon, method, path, extra, status):
    response = getattr(anon, method)(path, **extra)

    assert response["Content-Type"].startswith("application/json")
    assert_error(response, status, {404: "not_found", 405: "method_not_allowed", 406: "not_acceptable"}[status])


@pytest.mark.parametrize("path", ["/api/docs", "/api/schema"])
def test_options_on_schema_and_docs__json_metadata_not_500(anon, path):
    response = anon.options(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert "name" in response.json()


def test_schema__built_once_per_process_then_served_from_memory(anon):
    from flagsite.api.docs import forget_schema

    forget_schema()
    started = time.perf_counter()
    first = anon.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    again = [anon.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json") for _ in range(5)]
    warm = (time.perf_counter() - started) / 5
    yaml = anon.get("/api/schema")

    assert first.status_code == 200 and all(r.content == first.content for r in again)
    assert first["Content-Type"] == again[0]["Content-Type"]
    assert json.loads(first.content)["openapi"].startswith("3.")
    assert yaml["Content-Type"].startswith("application/vnd.oai.openapi") and yaml.content.startswith(b"openapi:")
    assert warm < cold / 3, (cold, warm)  # generating and rendering are skipped


def test_docs_page__still_html(anon):
    response = anon.get("/api/docs")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")


# ---- OFREP: a flag key with a line break fell through to Django's HTML 404 ---------------------------


@pytest.mark.parametrize("key", ["a%0Ab", "%0A", "x%0D%0Ay"])
def test_ofrep_key_with_a_line_break__ofrep_flag_not_found(sdk_api, key):
    response = sdk_api.post(f"/ofrep/v1/evaluate/flags/{key}", {"context": {"targetingKey": "u"}})

    assert response.status_code == 404 and response["Content-Type"].startswith("application/json")
    assert response.json()["errorCode"] == "FLAG_NOT_FOUND"


def test_rest_key_with_a_line_break__json_404(editor_api):
    assert_error(editor_api.get("/api/flags/a%0Ab"), 404, "not_found")
