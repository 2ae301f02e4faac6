"""The targeting editor's endpoints (flags/editor.py) through Django's test client: check, save
targeting and variants, evaluate as a user. Permissions for every caller are in
tests/security/test_permission_matrix.py; here the contracts."""

import json
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from audit.models import AuditEntry
from flags.models import Flag, FlagState
from flags.snapshot import get_snapshot

pytestmark = pytest.mark.django_db

RULES = [{"type": "all", "rules": [{"type": "geo", "operator": "in", "value": ["US", "CA"]},
                                   {"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}]},
         {"type": "percentage", "operator": "less_than", "value": 30}]


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


def state(key="checkout", env="production"):
    return FlagState.objects.get(flag__key=key, environment__key=env)


def test_check__valid_rules__no_fields_and_the_plain_words_summary(staff_client, page_flag):
    page_flag("checkout")
    response = post(staff_client, "/flags/checkout/check", {"rules": RULES})
    assert response.status_code == 200
    assert response.json() == {"fields": {}, "summary": "When (country is US or CA and plan is premium), "
                                                        "then 30% of users."}


def test_check__errors_at_their_rule_paths__nothing_written(staff_client, page_flag, world):
    page_flag("checkout")
    before = world.snapshot()
    rules = [{"type": "geo", "operator": "in", "value": ["USA"]},
             {"type": "custom", "field": "plan", "operator": "equalz", "value": "x"}]
    response = post(staff_client, "/flags/checkout/check", {"rules": rules,
                                                            "variants": [{"key": "a", "weight": -1}]})
    fields = response.json()["fields"]
    assert response.status_code == 200
    assert set(fields) == {"rules[0].value[0]", "rules[1].operator", "variants"}  # boolean flag: no variants
    assert "not a two-letter ISO country code" in fields["rules[0].value[0]"][0]
    assert world.snapshot() == before


def test_check__not_json__400_with_field_message(staff_client, page_flag):
    page_flag("checkout")
    response = staff_client.post("/flags/checkout/check", "{nope", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"
    assert post(staff_client, "/flags/checkout/check", {"rulez": []}).json()["error"]["fields"] == {
        "rulez": ["Unknown field."]}


def test_save_targeting__through_the_service__audit_row_and_new_snapshot(staff_client, page_flag):
    page_flag("checkout")
    response = post(staff_client, "/flags/checkout/targeting", {"environment": "production", "version": 1,
                                                                "rules": RULES})
    assert response.status_code == 200
    assert response.json()["version"] == 2 and response.json()["rules"] == RULES
    assert state().rules == RULES and state("checkout", "staging").rules == []
    entry = AuditEntry.objects.get(action="flag.updated")
    assert entry.actor == "ops" and entry.environment == "production" and entry.after["rules"] == RULES
    assert get_snapshot("production").evaluate("checkout", "u1", {"country": "DE"}).reason == "RULE_MISMATCH"


def test_save_targeting__invalid_rule__400_at_the_path__nothing_written(staff_client, page_flag, world):
    page_flag("checkout")
    before = world.snapshot()
    response = post(staff_client, "/flags/checkout/targeting", {
        "environment": "production", "version": 1,
        "rules": [{"type": "custom", "field": "age", "operator": "gt", "value": "old"}]})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["rules[0].value"]
    assert world.snapshot() == before


@pytest.mark.parametrize("body, field", [
    ({"version": 1, "rules": []}, "environment"),
    ({"environment": "production", "rules": []}, "version"),
    ({"environment": "production", "rules": [], "version": None}, "version"),
    ({"environment": "moon", "version": 1, "rules": []}, "environment"),
    ({"environment": "production", "version": 1, "rules": {}}, "rules"),
])
def test_save_targeting__bad_request__400_field_level(staff_client, page_flag, world, body, field):
    page_flag("checkout")
    before = world.snapshot()
    response = post(staff_client, "/flags/checkout/targeting", body)
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert world.snapshot() == before


def test_save_targeting__stale_version__409_nothing_written(staff_client, page_flag, world):
    page_flag("checkout")
    before = world.snapshot()
    response = post(staff_client, "/flags/checkout/targeting", {"environment": "production", "version": 7,
                                                                "rules": RULES})
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert world.snapshot() == before


def test_save_variants__multivariate_flag__saved_with_audit(staff_client, page_flag):
    page_flag("button", kind="multivariate", variants=[{"key": "a", "weight": 100, "value": "x"}])
    variants = [{"key": "a", "weight": 50, "value": {"color": "blue"}}, {"key": "b", "weight": 25, "value": 1},
                {"key": "c", "weight": 25, "value": None}]
    response = post(staff_client, "/flags/button/variants", {
        "variants": variants, "stickiness": "accountId",
        "seen": {"variants": [{"key": "a", "weight": 100, "value": "x"}], "stickiness": ""}})
    assert response.status_code == 200, response.content
    flag = Flag.objects.get(key="button")
    assert flag.variants == variants and flag.stickiness == "accountId"
    assert AuditEntry.objects.filter(action="flag.updated", target_key="button").count() == 1


def test_save_variants__off_variants_per_environment__round_trip_audited_and_served(staff_client, page_flag):
    page_flag("button", kind="multivariate", enabled=False, variants=[{"key": "a", "weight": 100, "value": "x"}])
    assert json.loads(staff_client.get("/flags/button").content.decode().split(
        'id="editor-data" type="application/json">')[1].split("</script>")[0])["offVariants"] == {
        "development": "", "staging": "", "production": ""}
    variants = [{"key": "a", "weight": 100, "value": "x"}, {"key": "b", "weight": 0, "value": {"c": 1}}]
    response = post(staff_client, "/flags/button/variants", {
        "variants": variants, "offVariants": {"production": "b", "staging": "a"},
        "seen": {"variants": [{"key": "a", "weight": 100, "value": "x"}], "stickiness": "",
                 "offVariants": {"development": "", "staging": "", "production": ""}}})
    assert response.status_code == 200, response.content
    assert response.json()["offVariants"] == {"development": "", "staging": "a", "production": "b"}
    assert (state("button").off_variant, state("button", "staging").off_variant) == ("b", "a")
    # one audit entry per change: staging's off variant, the variants, then production's (a new variant)
    assert AuditEntry.objects.filter(action="flag.updated", target_key="button").count() == 3
    result = get_snapshot("production").evaluate("button", "u")
    assert (result.enabled, result.variant, result.value) == (False, "b", {"c": 1})

    # removing "b" while production still serves it when off: a field error, nothing written
    refused = post(staff_client, "/flags/button/variants", {
        "variants": variants[:1], "seen": {"variants": variants, "stickiness": ""}})
    assert refused.status_code == 400 and "production" in refused.json()["error"]["fields"]["variants"][0]
    # choosing another off variant in the same save lets it go
    moved = post(staff_client, "/flags/button/variants", {
        "variants": variants[:1], "offVariants": {"production": ""}, "seen": {"variants": variants, "stickiness": ""}})
    assert moved.status_code == 200, moved.content
    assert state("button").off_variant == "" and Flag.objects.get(key="button").variants == variants[:1]
    # an unknown variant: a field error at the environment
    unknown = post(staff_client, "/flags/button/variants", {
        "variants": variants[:1], "offVariants": {"staging": "zzz"}, "seen": {"variants": variants[:1], "stickiness": ""}})
    assert unknown.status_code == 400 and list(unknown.json()["error"]["fields"]) == ["offVariants.staging"]


def test_save_variants__bad_weight__400_at_the_variant__nothing_written(staff_client, page_flag, world):
    page_flag("button", kind="multivariate", variants=[{"key": "a", "weight": 100}])
    before = world.snapshot()
    response = post(staff_client, "/flags/button/variants", {
        "variants": [{"key": "a", "weight": "x"}], "seen": {"variants": [{"key": "a", "weight": 100}], "stickiness": ""}})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["variants[0].weight"]
    assert world.snapshot() == before and Flag.objects.get(key="button").variants == [{"key": "a", "weight": 100}]


def test_save_variants__changed_since_loaded__409_nothing_written(staff_client, page_flag, world):
    page_flag("button", kind="multivariate", variants=[{"key": "a", "weight": 100}])
    before = world.snapshot()
    response = post(staff_client, "/flags/button/variants", {
        "variants": [{"key": "b", "weight": 100}], "seen": {"variants": [{"key": "old", "weight": 1}], "stickiness": ""}})
    assert response.status_code == 409 and response.json()["error"]["fields"] == {"seen": ["Stale variants."]}
    assert post(staff_client, "/flags/button/variants", {"variants": []}).json()["error"]["fields"] == {
        "seen": ["This field is required."]}
    assert world.snapshot() == before and Flag.objects.get(key="button").variants == [{"key": "a", "weight": 100}]


def test_evaluate_as__the_explain_answer_for_every_environment(staff_client, page_flag):
    page_flag("checkout", rules=[{"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}])
    response = post(staff_client, "/flags/checkout/evaluate-as", {"userId": "u1", "context": {"plan": "free"}})
    body = response.json()
    assert response.status_code == 200 and set(body["environments"]) == {"development", "staging", "production"}
    production = body["environments"]["production"]
    assert production["enabled"] is False and production["reason"] == "RULE_MISMATCH"
    assert production["decidingRule"] == "rules[0]"
    assert staff_client.post("/api/flags/checkout/explain", {"userId": "u1", "context": {"plan": "free"}},
                             content_type="application/json").json()["environments"] == body["environments"]


def test_evaluate_as__context_not_an_object__400(staff_client, page_flag):
    page_flag("checkout")
    response = post(staff_client, "/flags/checkout/evaluate-as", {"userId": "u1", "context": [1]})
    assert response.status_code == 400 and "context" in response.json()["error"]["fields"]


def test_view_only_staff__may_evaluate_as_but_not_check_or_save(client, page_flag, world):
    page_flag("checkout")
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set([Permission.objects.get(codename="view_flag")])
    client.force_login(viewer)
    before = world.snapshot()
    assert post(client, "/flags/checkout/evaluate-as", {"userId": "u1"}).status_code == 200
    assert post(client, "/flags/checkout/check", {"rules": []}).status_code == 403
    assert post(client, "/flags/checkout/targeting", {"environment": "production", "version": 1,
                                                      "rules": RULES}).status_code == 403
    assert world.snapshot() == before


def test_unknown_flag__404(staff_client):
    assert post(staff_client, "/flags/nope/check", {"rules": []}).status_code == 404


def test_get__405(staff_client, page_flag):
    page_flag("checkout")
    assert staff_client.get("/flags/checkout/check").status_code == 405


def test_admin_change_page__rules_fields_carry_the_editor_and_link_to_evaluate_as(admin_client, page_flag):
    flag = page_flag("checkout")
    body = admin_client.get(f"/admin/flags/flag/{flag.pk}/change/").content.decode()
    assert body.count("data-rules-editor=") == 3  # one per environment
    assert '<script src="/static/flags/editor/admin.js" type="module">' in body
    assert 'aria-label="Rules JSON for Production"' in body
    assert '/flags/checkout#evaluate-title' in body
    # "Evaluate as" below the form (a form of its own), with the page's endpoints
    assert body.index('id="evaluate-as-form"') > body.index('id="flag_form"')
    assert '"recent-contexts": "/flags/checkout/recent-contexts"' in body and 'id="evaluate-data"' in body
    assert 'data-environment="production"' in body


def test_admin_change_page__view_only_staff_get_evaluate_as(client, page_flag):
    flag = page_flag("checkout")
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set([Permission.objects.get(codename="view_flag")])
    client.force_login(viewer)
    body = client.get(f"/admin/flags/flag/{flag.pk}/change/").content.decode()
    assert 'id="evaluate-as-form"' in body and "data-rules-editor=" not in body
    assert '<script type="module" src="/static/flags/editor/admin.js">' in body
    add = client.get("/admin/flags/flag/add/")
    assert 'id="evaluate-as-form"' not in add.content.decode()


def test_flag_page__editor_only_for_those_who_may_change(client, page_flag):
    page_flag("checkout")
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set([Permission.objects.get(codename="view_flag")])
    client.force_login(viewer)
    body = client.get("/flags/checkout").content.decode()
    assert 'id="evaluate-as-form"' in body and 'id="targeting-editor"' not in body
    assert '"check"' not in body  # no editor options: the check endpoint would refuse them


def test_editor_options__the_engines_tables_segments_in_words_and_used_attributes_first(page_flag):
    from flags.editor import editor_options
    from segments.services import segment_create
    from tests.pages.conftest import SYSTEM

    segment_create(actor=SYSTEM, key="beta", name="Beta", conditions={"plan": "premium"})
    page_flag("other", rules=[{"type": "custom", "field": "tier", "operator": "exists"}])
    options = editor_options(page_flag("checkout"))

    assert options["operators"]["geo"] == ["in", "not_in"] and "semver_gt" in options["operators"]["custom"]
    assert "exists" in options["valueless"] and "equals" not in options["valueless"]
    assert options["segments"] == {"beta": "plan is premium"}
    assert options["flags"] == ["other"]  # not itself: a flag cannot be its own prerequisite
    assert options["attributes"][:2] == ["tier", "plan"] and "country" in options["attributes"]
    assert options["urls"]["check"] == "/flags/checkout/check"


# ---- recent contexts (analytics/recent.py) for "Evaluate as" --------------------------------------

@pytest.fixture
def recorder():
    from analytics import counters

    counters.recorder.reset()
    yield counters.recorder
    counters.recorder.reset()


def evaluate_and_record(recorder, key, user_id, context, env="production", second=1_800_000_000):
    result = get_snapshot(env).evaluate(key, user_id, context)
    recorder.record(result, user_id, context, _time=lambda: second)
    return result


def test_recent_contexts__the_sampled_evaluations_newest_first(staff_client, page_flag, recorder):
    page_flag("checkout", rules=[{"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}])
    now = int(time.time())
    evaluate_and_record(recorder, "checkout", "user-1", {"plan": "free", "country": "DE"}, second=now - 5)
    evaluate_and_record(recorder, "checkout", "user-2", {"plan": "premium"}, env="staging", second=now - 1)
    recorder.flush()  # one in the cache, one waiting in this process: both shown
    evaluate_and_record(recorder, "checkout", "user-3", {"plan": "premium", "email": "a@example.com"}, second=now)

    response = staff_client.get("/flags/checkout/recent-contexts")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == {"enabled": True, "contexts": [
        {"at": now, "environment": "production", "userId": "user-3", "context": {"plan": "premium",
                                                                                  "email": "a@example.com"},
         "enabled": True, "variant": None, "reason": "TARGETING_MATCH"},
        {"at": now - 1, "environment": "staging", "userId": "user-2", "context": {"plan": "premium"},
         "enabled": True, "variant": None, "reason": "TARGETING_MATCH"},
        {"at": now - 5, "environment": "production", "userId": "user-1", "context": {"plan": "free", "country": "DE"},
         "enabled": False, "variant": None, "reason": "RULE_MISMATCH"}]}
    assert staff_client.get("/flags/other/recent-contexts").status_code == 404
    page_flag("quiet")
    assert staff_client.get("/flags/quiet/recent-contexts").json() == {"enabled": True, "contexts": []}


def test_recent_contexts__turned_off__none_shown(staff_client, page_flag, recorder, settings):
    page_flag("checkout")
    evaluate_and_record(recorder, "checkout", "user-1", {"plan": "free"}, second=int(time.time()))
    recorder.flush()
    settings.FLAGS_RECENT_CONTEXTS = False
    assert staff_client.get("/flags/checkout/recent-contexts").json() == {"enabled": False, "contexts": []}


def test_recent_contexts__view_only_staff_may_read__post_405(client, page_flag, recorder):
    page_flag("checkout")
    evaluate_and_record(recorder, "checkout", "user-1", {"plan": "free"}, second=int(time.time()))
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set([Permission.objects.get(codename="view_flag")])
    client.force_login(viewer)
    assert [c["userId"] for c in client.get("/flags/checkout/recent-contexts").json()["contexts"]] == ["user-1"]
    assert client.post("/flags/checkout/recent-contexts").status_code == 405
    body = client.get("/flags/checkout").content.decode()
    assert '"recent-contexts": "/flags/checkout/recent-contexts"' in body  # the picker's url, for viewers too


def test_editor_options__attributes_of_recent_contexts_offered_first(page_flag, recorder):
    from flags.editor import editor_options

    page_flag("other", rules=[{"type": "custom", "field": "tier", "operator": "exists"}])
    flag = page_flag("checkout")
    now = int(time.time())
    evaluate_and_record(recorder, "checkout", "u1", {"appBuild": 7, "plan": "free"}, second=now - 1)
    evaluate_and_record(recorder, "checkout", "u2", {"appBuild": 8, "region": "eu"}, second=now)
    evaluate_and_record(recorder, "other", "u3", {"elsewhere": 1}, second=now)  # another flag's: not first
    options = editor_options(flag)
    assert options["recentAttributes"] == ["appBuild", "region", "plan"]  # most frequent, then newest
    assert options["attributes"][:4] == ["appBuild", "region", "plan", "tier"]
    assert "elsewhere" not in options["attributes"]
    assert options["urls"]["recent-contexts"] == "/flags/checkout/recent-contexts"
