"""OFREP contract (open-feature/protocol service/openapi.yaml) through DRF's test client: bodies,
status codes, reasons, variants, errors, ETag / 304, 429 with Retry-After, no SQL once warm."""

import pytest

from flags import services
from flags.models import Flag

from tests.api.conftest import Client, make_key, user_with

from .data import COLORS, SYSTEM

pytestmark = pytest.mark.django_db

ONE = "/ofrep/v1/evaluate/flags/{}"
BULK = "/ofrep/v1/evaluate/flags"
COLOR_VALUES = {variant["key"]: variant["value"] for variant in COLORS}


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.FLAGS_MAX_STALENESS_MS = 0  # every request sees the latest committed version


def evaluate(api, key, context=None, **extra):
    body = {} if context is None else {"context": context}
    return api.post(ONE.format(key), body, **extra)


def ok(response):
    assert response.status_code == 200, response.content
    return response.json()


# ---- single evaluation: values, reasons, variants, metadata ---------------------------------------


def test_boolean_flag_without_rules__static_true_variant_on(sdk_api, flags):
    body = ok(evaluate(sdk_api, "dark-mode", {"targetingKey": "user-1"}))

    assert {k: body[k] for k in ("key", "value", "reason", "variant")} == {
        "key": "dark-mode", "value": True, "reason": "STATIC", "variant": "on"}
    meta = body["metadata"]
    assert (meta["environment"], meta["enabled"], meta["flagsiteReason"]) == ("production", True, "STATIC")
    assert isinstance(meta["environmentVersion"], int) and isinstance(meta["flagVersion"], int)
    assert all(isinstance(v, (bool, str, int, float)) for v in meta.values())


def test_context_attributes_drive_rules__match_and_mismatch(sdk_api, flags):
    match = ok(evaluate(sdk_api, "geo-us", {"targetingKey": "u", "country": "US"}))
    miss = ok(evaluate(sdk_api, "geo-us", {"targetingKey": "u", "country": "FR"}))

    assert (match["value"], match["reason"], match["variant"]) == (True, "TARGETING_MATCH", "on")
    # RULE_MISMATCH -> DEFAULT: targeting ran, did not match, the off value is the fallback
    assert (miss["value"], miss["reason"], miss["variant"]) == (False, "DEFAULT", "off")
    assert (miss["metadata"]["flagsiteReason"], miss["metadata"]["rule"]) == ("RULE_MISMATCH", 0)


def test_disabled_and_killed__reason_disabled_value_false(sdk_api, flags):
    off = ok(evaluate(sdk_api, "off-flag", {"targetingKey": "u"}))
    killed = ok(evaluate(sdk_api, "killed-flag", {"targetingKey": "u"}))

    assert (off["value"], off["reason"], off["variant"]) == (False, "DISABLED", "off")
    assert (killed["value"], killed["reason"], killed["variant"]) == (False, "DISABLED", "off")
    assert (off["metadata"]["flagsiteReason"], killed["metadata"]["flagsiteReason"]) == ("DISABLED", "KILLED")


def test_multivariate_split__answers_the_variants_value_sticky_per_user(sdk_api, flags):
    seen = {}
    for n in range(40):
        body = ok(evaluate(sdk_api, "button-color", {"targetingKey": f"user-{n}"}))
        assert body["reason"] == "SPLIT"
        assert body["value"] == COLOR_VALUES[body["variant"]]
        seen[f"user-{n}"] = body["variant"]
    again = ok(evaluate(sdk_api, "button-color", {"targetingKey": "user-7"}))

    assert set(seen.values()) == {"blue", "green"}
    assert again["variant"] == seen["user-7"]


@pytest.mark.parametrize("key, value, variant", [
    ("limits", {"max": 10, "tier": "gold"}, "gold"),
    ("ratio", 0.25, "quarter"),
    ("retries", 3, "three"),
])
def test_multivariate_object_and_number_values(sdk_api, flags, key, value, variant):
    body = ok(evaluate(sdk_api, key, {"targetingKey": "u"}))

    assert (body["value"], body["variant"], body["reason"]) == (value, variant, "STATIC")
    assert type(body["value"]) is type(value)


def test_multivariate_off__no_value_so_the_code_default_applies_variant_still_named(sdk_api, flags):
    miss = ok(evaluate(sdk_api, "premium-theme", {"targetingKey": "u", "plan": "free"}))
    hit = ok(evaluate(sdk_api, "premium-theme", {"targetingKey": "u", "plan": "premium"}))
    disabled = ok(evaluate(sdk_api, "theme-off", {"targetingKey": "u"}))

    assert "value" not in miss and (miss["variant"], miss["reason"]) == ("off", "DEFAULT")
    assert (hit["value"], hit["variant"], hit["reason"]) == ("gold-theme", "gold", "TARGETING_MATCH")
    assert "value" not in disabled and (disabled["variant"], disabled["reason"]) == ("off", "DISABLED")


def test_multivariate_off_with_an_off_variant__its_value_and_key(sdk_api, flags):
    services.flag_create(actor=SYSTEM, key="themed", name="Themed", kind="multivariate",
                         variants=[{"key": "gold", "weight": 1, "value": "gold-theme"},
                                   {"key": "plain", "weight": 0, "value": "plain-theme"}],
                         states={"production": {"enabled": True, "offVariant": "plain", "rules": [
                             {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}]}})

    miss = ok(evaluate(sdk_api, "themed", {"targetingKey": "u", "plan": "free"}))
    hit = ok(evaluate(sdk_api, "themed", {"targetingKey": "u", "plan": "premium"}))

    assert (miss["value"], miss["variant"], miss["reason"]) == ("plain-theme", "plain", "DEFAULT")
    assert miss["metadata"]["enabled"] is False
    assert (hit["value"], hit["variant"]) == ("gold-theme", "gold")


def test_empty_body_and_no_context__flags_that_need_no_user_evaluate(sdk_api, flags):
    empty = sdk_api.post(ONE.format("dark-mode"), None)
    no_context = sdk_api.post(ONE.format("dark-mode"), {})

    assert ok(empty)["value"] is True and ok(no_context)["value"] is True


# ---- single evaluation: errors ------------------------------------------------------------------


def test_unknown_flag__404_flag_not_found(sdk_api, flags):
    response = evaluate(sdk_api, "ghost", {"targetingKey": "u"})

    assert response.status_code == 404
    body = response.json()
    assert (body["key"], body["errorCode"]) == ("ghost", "FLAG_NOT_FOUND")
    assert "ghost" in body["errorDetails"] and "production" in body["errorDetails"]


def test_key_with_slash__still_ofrep_404(sdk_api, flags):
    response = evaluate(sdk_api, "a/b", {"targetingKey": "u"})

    assert response.status_code == 404 and response.json()["errorCode"] == "FLAG_NOT_FOUND"


@pytest.mark.parametrize("key", ["rollout", "button-color"])
def test_targeting_key_missing__400_only_for_flags_that_target_users(sdk_api, flags, key):
    response = evaluate(sdk_api, key, {"country": "US"})

    assert response.status_code == 400
    assert response.json() == {"key": key, "errorCode": "TARGETING_KEY_MISSING",
                                "errorDetails": f"Flag '{key}' targets by user id: give context.targetingKey."}


def test_targeting_key_missing__not_raised_for_off_flags_or_attribute_rules(sdk_api, flags):
    services.flag_toggle(actor=SYSTEM, flag=Flag.objects.get(key="rollout"), environment="production",
                         enabled=False)

    assert ok(evaluate(sdk_api, "rollout", {}))["reason"] == "DISABLED"
    assert ok(evaluate(sdk_api, "geo-us", {"country": "US"}))["value"] is True


def test_targeting_key_through_a_segment_counts(sdk_api, flags):
    from tests.api.conftest import create_segment

    create_segment("staff", [{"type": "user", "operator": "in", "value": ["alice"]}])
    services.flag_create(actor=SYSTEM, key="staff-only", name="Staff", states={
        "production": {"enabled": True, "rules": [{"type": "segment", "operator": "in", "value": ["staff"]}]}})

    assert evaluate(sdk_api, "staff-only", {}).json()["errorCode"] == "TARGETING_KEY_MISSING"
    assert ok(evaluate(sdk_api, "staff-only", {"targetingKey": "alice"}))["reason"] == "TARGETING_MATCH"


@pytest.mark.parametrize("raw, code", [
    ("{not json", "PARSE_ERROR"),
    ("[1, 2]", "PARSE_ERROR"),
    ('"text"', "PARSE_ERROR"),
    ('{"context": "US"}', "INVALID_CONTEXT"),
    ('{"context": [1]}', "INVALID_CONTEXT"),
    ('{"context": {"targetingKey": 42}}', "INVALID_CONTEXT"),
])
def test_bad_bodies__400_with_error_code(sdk_api, flags, raw, code):
    response = sdk_api.post(ONE.format("dark-mode"), raw)

    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["key"], body["errorCode"]) == ("dark-mode", code)
    assert isinstance(body["errorDetails"], str) and body["errorDetails"]


def test_bulk_bad_body__400_without_key(sdk_api, flags):
    response = sdk_api.post(BULK, '{"context": 5}')

    assert response.status_code == 400
    assert set(response.json()) == {"errorCode", "errorDetails"}
    assert response.json()["errorCode"] == "INVALID_CONTEXT"


# ---- auth ---------------------------------------------------------------------------------------


def test_no_key_and_bad_key__401(anon, flags):
    bad = Client("sdk_production_not-a-key")
    for client in (anon, bad):
        response = evaluate(client, "dark-mode", {"targetingKey": "u"})
        assert response.status_code == 401
        assert response.json()["errorCode"] == "GENERAL"
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert bad.post(BULK, {}).status_code == 401


def test_x_api_key_header_works(keys, flags):
    client = Client()
    client.credentials(HTTP_X_API_KEY=keys["sdk"])

    assert ok(evaluate(client, "dark-mode", {"targetingKey": "u"}))["value"] is True


def test_sdk_key_is_bound_to_its_environment(sdk_api, keys, flags):
    services.flag_toggle(actor=SYSTEM, flag=Flag.objects.get(key="dark-mode"), environment="staging",
                         enabled=False)

    other = Client(keys["sdk_other"])
    assert ok(evaluate(other, "dark-mode", {"targetingKey": "u"}))["value"] is False  # staging key
    assert ok(evaluate(sdk_api, "dark-mode", {"targetingKey": "u"}))["value"] is True  # production key
    forbidden = sdk_api.post(ONE.format("dark-mode") + "?environment=staging", {})
    assert forbidden.status_code == 403 and forbidden.json()["errorCode"] == "GENERAL"


def test_management_token__needs_view_permission_and_picks_environment(reader_api, flags):
    services.flag_toggle(actor=SYSTEM, flag=Flag.objects.get(key="dark-mode"), environment="staging",
                         enabled=False)
    nobody = Client(make_key("management", user=user_with("nobody", [])))

    assert ok(reader_api.post(ONE.format("dark-mode") + "?environment=staging", {}))["value"] is False
    assert ok(reader_api.post(ONE.format("dark-mode") + "?environment=production", {}))["value"] is True
    assert evaluate(nobody, "dark-mode").status_code == 403
    unknown = reader_api.post(ONE.format("dark-mode") + "?environment=nowhere", {})
    assert unknown.status_code == 400 and unknown.json()["errorCode"] == "GENERAL"


# ---- bulk ----------------------------------------------------------------------------------------


def by_key(body):
    return {item["key"]: item for item in body["flags"]}


def test_bulk__every_flag_and_per_flag_targeting_key_failures(sdk_api, flags):
    anonymous = by_key(ok(sdk_api.post(BULK, {"context": {"country": "US"}})))
    known = by_key(ok(sdk_api.post(BULK, {"context": {"targetingKey": "user-3", "country": "US"}})))

    assert set(anonymous) == set(known) == set(Flag.objects.values_list("key", flat=True))
    assert anonymous["rollout"]["errorCode"] == anonymous["button-color"]["errorCode"] == "TARGETING_KEY_MISSING"
    assert "value" not in anonymous["rollout"]
    assert anonymous["geo-us"]["value"] is True and anonymous["dark-mode"]["reason"] == "STATIC"
    assert known["button-color"]["value"] == COLOR_VALUES[known["button-color"]["variant"]]
    assert known["rollout"]["reason"] in ("SPLIT", "DEFAULT") and "errorCode" not in known["rollout"]
    assert known["limits"]["value"] == {"max": 10, "tier": "gold"}
    single = ok(evaluate(sdk_api, "button-color", {"targetingKey": "user-3", "country": "US"}))
    assert known["button-color"] == single


def test_bulk_etag__304_when_unchanged_new_etag_after_a_change_or_other_context(sdk_api, flags):
    context = {"context": {"targetingKey": "u-1", "country": "US"}}
    first = sdk_api.post(BULK, context)
    etag = first["ETag"]
    assert first.status_code == 200 and etag.startswith('"') and etag.endswith('"')

    same = sdk_api.post(BULK, context, HTTP_IF_NONE_MATCH=etag)
    weak_in_list = sdk_api.post(BULK, context, HTTP_IF_NONE_MATCH=f'"other", W/{etag}')
    other_context = sdk_api.post(BULK, {"context": {"targetingKey": "u-1", "country": "FR"}},
                                 HTTP_IF_NONE_MATCH=etag)
    assert (same.status_code, same.content, same["ETag"]) == (304, b"", etag)
    assert weak_in_list.status_code == 304
    assert other_context.status_code == 200 and other_context["ETag"] != etag

    services.flag_toggle(actor=SYSTEM, flag=Flag.objects.get(key="dark-mode"), environment="production",
                         enabled=False)
    changed = sdk_api.post(BULK, context, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert by_key(changed.json())["dark-mode"]["value"] is False


# ---- rate limit ----------------------------------------------------------------------------------


def test_rate_limit__429_with_retry_after_per_key(settings, sdk_api, keys, flags):
    settings.FLAGS_OFREP_RATE_LIMIT = "3/h"  # per minute, a run crossing a minute got a fresh window
    statuses = [evaluate(sdk_api, "dark-mode").status_code for _ in range(3)]
    limited = evaluate(sdk_api, "dark-mode")
    bulk_limited = sdk_api.post(BULK, {})
    other_key = evaluate(Client(keys["sdk_other"]), "dark-mode")

    assert statuses == [200, 200, 200]
    assert limited.status_code == 429 and bulk_limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 3600
    assert limited.json()["errorCode"] == "GENERAL" and limited.json()["errorDetails"]
    assert other_key.status_code == 200


def test_rate_limit_off(settings, sdk_api, flags):
    settings.FLAGS_OFREP_RATE_LIMIT = "off"

    assert {evaluate(sdk_api, "dark-mode").status_code for _ in range(20)} == {200}


# ---- configuration and the hot path ----------------------------------------------------------------


def test_configuration__capabilities_with_etag(sdk_api, anon, flags):
    response = sdk_api.get("/ofrep/v1/configuration")
    body = ok(response)

    assert body["name"] == "Flagsite"
    assert body["capabilities"]["cacheInvalidation"]["polling"]["enabled"] is True
    assert set(body["capabilities"]["flagEvaluation"]["supportedTypes"]) == {"boolean", "string", "int", "float", "object"}
    again = sdk_api.get("/ofrep/v1/configuration", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert anon.get("/ofrep/v1/configuration").status_code == 401


def test_warm_evaluations_run_no_sql(settings, sdk_api, flags, django_assert_num_queries):
    settings.FLAGS_MAX_STALENESS_MS = 60_000
    settings.FLAGS_OFREP_RATE_LIMIT = "off"
    evaluate(sdk_api, "dark-mode", {"targetingKey": "u"})  # warms the key cache and the snapshot
    sdk_api.post(BULK, {"context": {"targetingKey": "u"}})

    with django_assert_num_queries(0):
        single = evaluate(sdk_api, "button-color", {"targetingKey": "u"})
        bulk = sdk_api.post(BULK, {"context": {"targetingKey": "u", "country": "US"}})
    assert single.status_code == bulk.status_code == 200


def test_a_change_is_seen_by_the_next_evaluation(sdk_api, flags):
    assert ok(evaluate(sdk_api, "dark-mode"))["value"] is True
    services.flag_kill(actor=SYSTEM, flag=Flag.objects.get(key="dark-mode"), reason="incident")
    body = ok(evaluate(sdk_api, "dark-mode"))

    assert (body["value"], body["reason"], body["metadata"]["flagsiteReason"]) == (False, "DISABLED", "KILLED")


def test_rate_limit_fails_open_when_the_cache_is_down(settings, sdk_api, flags, monkeypatch):
    from flagsite.api import throttling

    settings.FLAGS_OFREP_RATE_LIMIT = "1/m"
    evaluate(sdk_api, "dark-mode")  # warm: the snapshot is compiled, the limit is now spent

    def down(*args, **kwargs):
        raise ConnectionError("redis down")

    monkeypatch.setattr(throttling.cache, "incr", down)
    monkeypatch.setattr(throttling.cache, "add", down)
    response = evaluate(sdk_api, "dark-mode", {"targetingKey": "u"})

    assert response.status_code == 200 and response.json()["value"] is True


def test_ofrep_evaluations__counted_for_analytics_like_rest(sdk_api, flags):
    from analytics import counters

    before = counters.recorder.pending_evaluations()
    ok(evaluate(sdk_api, "dark-mode", {"targetingKey": "user-1"}))
    bulk = ok(sdk_api.post(BULK, {"context": {"targetingKey": "user-1"}}))
    answered = sum(1 for item in bulk["flags"] if "errorCode" not in item)
    assert counters.recorder.pending_evaluations() - before == 1 + answered


def test_unknown_ofrep_path__404_in_the_ofrep_error_shape(sdk_api):
    response = sdk_api.get("/ofrep/v2/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"errorCode": "GENERAL", "errorDetails": "Not found."}
