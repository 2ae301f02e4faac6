"""Contract tests for /api/evaluate, /api/evaluate/bulk and /api/sdk/snapshot."""

import pytest

from .conftest import Client, assert_error, create_flag, create_segment, db_state

pytestmark = pytest.mark.django_db

EVALUATION_FIELDS = {"flagId", "enabled", "variant", "value", "reason", "rule", "environment", "version"}
SEED_EVALUATE = {"flagId": "new-feature", "userId": "user-123", "context": {"country": "US", "device": "mobile"}}


@pytest.fixture(autouse=True)
def _always_fresh(settings):
    settings.FLAGS_MAX_STALENESS_MS = 0  # every request sees the latest committed version


def test_evaluate__seed_body__answers_the_engine_result(sdk_api):
    create_flag("new-feature", states={"production": {"enabled": True, "rules": [
        {"type": "geo", "operator": "in", "value": ["US", "CA"]}]}})

    response = sdk_api.post("/api/evaluate", SEED_EVALUATE)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= EVALUATION_FIELDS
    assert body["flagId"] == "new-feature"
    assert (body["enabled"], body["value"], body["variant"]) == (True, True, None)
    assert body["reason"] == "TARGETING_MATCH"
    assert body["environment"] == "production"  # the SDK key's environment
    assert isinstance(body["version"], int)


def test_evaluate__rule_mismatch_and_disabled_reasons(sdk_api):
    create_flag("geo", states={"production": {"enabled": True, "rules": [{"type": "geo", "operator": "in", "value": ["CA"]}]}})
    create_flag("off")

    mismatch = sdk_api.post("/api/evaluate", {"flagId": "geo", "userId": "u", "context": {"country": "US"}}).json()
    off = sdk_api.post("/api/evaluate", {"flagId": "off", "userId": "u"}).json()

    assert (mismatch["enabled"], mismatch["reason"], mismatch["rule"]) == (False, "RULE_MISMATCH", 0)
    assert (off["enabled"], off["reason"], off["value"]) == (False, "DISABLED", False)


def test_evaluate__unknown_flag__200_flag_not_found(sdk_api):
    body = sdk_api.post("/api/evaluate", {"flagId": "ghost", "userId": "u"}).json()

    assert (body["flagId"], body["enabled"], body["reason"]) == ("ghost", False, "FLAG_NOT_FOUND")


def test_evaluate__segment_rule_uses_segment_conditions(sdk_api):
    create_segment("premium", {"plan": "premium"})
    create_flag("perk", states={"production": {"enabled": True, "rules": [{"type": "segment", "operator": "in", "value": ["premium"]}]}})

    yes = sdk_api.post("/api/evaluate", {"flagId": "perk", "userId": "u", "context": {"plan": "premium"}}).json()
    no = sdk_api.post("/api/evaluate", {"flagId": "perk", "userId": "u", "context": {"plan": "free"}}).json()

    assert (yes["enabled"], no["enabled"]) == (True, False)


def test_evaluate__reflects_toggle_and_kill(sdk_api, editor_api):
    create_flag("f", states={"production": {"enabled": True}})
    body = {"flagId": "f", "userId": "u"}
    assert sdk_api.post("/api/evaluate", body).json()["enabled"] is True

    editor_api.post("/api/flags/f/kill-switch", {"reason": "incident"})
    killed = sdk_api.post("/api/evaluate", body).json()
    editor_api.post("/api/flags/f/restore", {})
    restored = sdk_api.post("/api/evaluate", body).json()
    editor_api.patch("/api/flags/f/toggle?environment=production")
    toggled = sdk_api.post("/api/evaluate", body).json()

    assert (killed["enabled"], killed["reason"]) == (False, "KILLED")
    assert restored["enabled"] is True and restored["version"] > killed["version"]
    assert (toggled["enabled"], toggled["reason"]) == (False, "DISABLED")


def test_evaluate__management_token_uses_environment_param(reader_api):
    create_flag("f", states={"staging": {"enabled": True}})

    staging = reader_api.post("/api/evaluate?environment=staging", {"flagId": "f", "userId": "u"}).json()
    default = reader_api.post("/api/evaluate", {"flagId": "f", "userId": "u"}).json()
    in_body = reader_api.post("/api/evaluate", {"flagId": "f", "userId": "u", "environment": "staging"}).json()

    assert (staging["environment"], staging["enabled"]) == ("staging", True)
    assert (default["environment"], default["enabled"]) == ("development", False)
    assert in_body["enabled"] is True


def test_evaluate__sdk_key_of_other_environment__403(keys):
    create_flag("f")
    staging_sdk = Client(keys["sdk_other"])

    assert_error(staging_sdk.post("/api/evaluate?environment=production", {"flagId": "f", "userId": "u"}), 403, "permission_denied")
    assert_error(staging_sdk.post("/api/evaluate", {"flagId": "f", "userId": "u", "environment": "production"}), 403, "permission_denied")


@pytest.mark.parametrize("body, field", [
    ({"userId": "u"}, "flagId"),
    ({"flagId": 3, "userId": "u"}, "flagId"),
    ({"flagId": "f", "userId": ["u"]}, "userId"),
    ({"flagId": "f", "userId": "u", "context": "US"}, "context"),
    ([1, 2], ""),
])
def test_evaluate__bad_input__400_with_field(sdk_api, body, field):
    assert_error(sdk_api.post("/api/evaluate", body), 400, "validation_error", field)


def test_evaluate__non_json__400_parse_error(sdk_api):
    assert_error(sdk_api.post("/api/evaluate", "{flagId: nope"), 400, "parse_error")


def test_evaluate__unknown_environment__400(reader_api):
    assert_error(reader_api.post("/api/evaluate?environment=nope", {"flagId": "f", "userId": "u"}), 400, "validation_error", "environment")


def test_evaluate__warm__zero_queries(keys, django_assert_num_queries, settings):
    settings.FLAGS_MAX_STALENESS_MS = 60_000
    create_flag("f", states={"production": {"enabled": True, "rules": [{"type": "percentage", "operator": "less_than", "value": 100}]}})
    sdk, token = Client(keys["sdk"]), Client(keys["reader"])
    body = {"flagId": "f", "userId": "u", "context": {}}
    bulk = {"userId": "u", "context": {}}
    for client in (sdk, token):  # warm-up: key lookups, snapshot build, last_used_at write
        client.post("/api/evaluate?environment=production", body)
        client.post("/api/evaluate/bulk?environment=production", bulk)

    with django_assert_num_queries(0):
        responses = [
            sdk.post("/api/evaluate", body),
            sdk.post("/api/evaluate/bulk", bulk),
            token.post("/api/evaluate?environment=production", body),
            token.post("/api/evaluate/bulk?environment=production", bulk),
        ]

    assert [r.status_code for r in responses] == [200] * 4
    assert responses[0].json()["reason"] == "SPLIT"


def test_evaluate__revoked_key__401_at_once_in_this_process(keys, django_capture_on_commit_callbacks):
    from flags import services
    from flags.models import ApiKey
    from flagsite.api.authentication import hash_key

    from .conftest import SYSTEM

    client = Client(keys["sdk"])
    assert client.post("/api/evaluate", {"flagId": "f", "userId": "u"}).status_code == 200  # now cached

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(actor=SYSTEM, api_key=ApiKey.objects.get(key_hash=hash_key(keys["sdk"])))

    assert_error(client.post("/api/evaluate", {"flagId": "f", "userId": "u"}), 401, "not_authenticated")


def test_evaluate__revoked_key__401_in_other_processes_after_the_cache_ttl(keys, monkeypatch):
    import time

    from django.utils import timezone

    from flags.models import ApiKey
    from flagsite.api import authentication
    from flagsite.api.authentication import hash_key

    client = Client(keys["sdk"])
    assert client.post("/api/evaluate", {"flagId": "f", "userId": "u"}).status_code == 200
    # another process revoked it: this process's cache was not told
    ApiKey.objects.filter(key_hash=hash_key(keys["sdk"])).update(revoked_at=timezone.now())
    assert client.post("/api/evaluate", {"flagId": "f", "userId": "u"}).status_code == 200  # within the TTL

    later = time.monotonic() + 5.1  # FLAGS_API_KEY_CACHE_SECONDS (5) later
    monkeypatch.setattr(authentication.time, "monotonic", lambda: later)

    assert_error(client.post("/api/evaluate", {"flagId": "f", "userId": "u"}), 401, "not_authenticated")


def test_evaluate__x_api_key_header_and_bad_key(keys):
    create_flag("f")
    by_header = Client()
    by_header.credentials(HTTP_X_API_KEY=keys["sdk"])

    assert by_header.post("/api/evaluate", {"flagId": "f", "userId": "u"}).status_code == 200
    response = Client("sdk_production_not-a-real-key").post("/api/evaluate", {"flagId": "f", "userId": "u"})
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_evaluate__last_used_at_recorded(keys):
    from flags.models import ApiKey
    from flagsite.api.authentication import hash_key

    Client(keys["sdk"]).post("/api/evaluate", {"flagId": "f", "userId": "u"})

    assert ApiKey.objects.get(key_hash=hash_key(keys["sdk"])).last_used_at is not None


def test_bulk__all_flags_or_listed_ones(sdk_api):
    create_flag("a", states={"production": {"enabled": True}})
    create_flag("b")

    every = sdk_api.post("/api/evaluate/bulk", {"userId": "u", "context": {}})
    listed = sdk_api.post("/api/evaluate/bulk", {"flagIds": ["b", "ghost"], "userId": "u"})

    assert every.status_code == 200, every.content
    body = every.json()
    assert body["environment"] == "production" and isinstance(body["version"], int)
    assert {k: v["enabled"] for k, v in body["flags"].items()} == {"a": True, "b": False}
    assert set(body["flags"]["a"]) >= EVALUATION_FIELDS
    assert {k: v["reason"] for k, v in listed.json()["flags"].items()} == {"b": "DISABLED", "ghost": "FLAG_NOT_FOUND"}


def test_bulk__listed_twice__once_in_request_order_as_json_with_unicode_values_intact(sdk_api):
    # The answers are JSON bytes made once per engine result (flags/results.py): they must decode to
    # the same JSON the DRF renderer gives, whatever the values hold.
    value = {"text": "Grüße \u2028 \"quoted\" </script>", "n": [1, 2.5, None, True]}
    create_flag("mv", kind="multivariate", variants=[{"key": "only", "weight": 100, "value": value}],
                states={"production": {"enabled": True}})
    create_flag("b")

    response = sdk_api.post("/api/evaluate/bulk", {"flagIds": ["mv", "b", "mv", "ghost"], "userId": "u"})
    single = sdk_api.post("/api/evaluate", {"flagId": "mv", "userId": "u"})

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    flags = response.json()["flags"]
    assert list(flags) == ["mv", "b", "ghost"] and response.content.count(b'"mv":{') == 1
    assert (flags["mv"]["variant"], flags["mv"]["value"]) == ("only", value)
    assert single.status_code == 200 and single["Content-Type"] == "application/json"
    assert single.json() == flags["mv"]
    assert b"\\u2028" in single.content  # escaped as DRF's renderer does (JSON embedded in HTML/JS)


@pytest.mark.parametrize("body, field", [
    ({"flagIds": "a", "userId": "u"}, "flagIds"),
    ({"flagIds": [1], "userId": "u"}, "flagIds"),
    ({"userId": "u", "context": []}, "context"),
])
def test_bulk__bad_input__400(sdk_api, body, field):
    assert_error(sdk_api.post("/api/evaluate/bulk", body), 400, "validation_error", field)


def test_sdk_snapshot__etag_and_304(sdk_api, editor_api):
    create_flag("f", states={"production": {"enabled": True}})

    first = sdk_api.get("/api/sdk/snapshot")

    assert first.status_code == 200, first.content
    body = first.json()
    assert body["environment"] == "production"
    assert isinstance(body["version"], int)
    assert "f" in str(body["flags"])
    etag = first["ETag"]
    assert etag
    assert sdk_api.get("/api/sdk/snapshot", HTTP_IF_NONE_MATCH=etag).status_code == 304

    editor_api.patch("/api/flags/f/toggle?environment=production")
    changed = sdk_api.get("/api/sdk/snapshot", HTTP_IF_NONE_MATCH=etag)

    assert changed.status_code == 200
    assert changed["ETag"] != etag


def test_evaluate__writes_nothing(sdk_api):
    create_flag("f")
    sdk_api.post("/api/evaluate", {"flagId": "f", "userId": "u"})  # first use records last_used_at
    before = db_state()

    sdk_api.post("/api/evaluate", {"flagId": "f", "userId": "u"})
    sdk_api.post("/api/evaluate/bulk", {"userId": "u"})

    assert db_state() == before
