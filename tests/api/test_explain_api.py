"""POST /api/flags/{key}/explain: why a user gets what they get, every environment side by side."""

import json

import pytest

from tests.engine.explain_checks import check

from .conftest import EDIT_PERMS, READ_PERMS, Client, assert_error, create_flag, create_segment, db_state, user_with
from .test_vectors_rest import FILES, load

pytestmark = pytest.mark.django_db

EXPLANATION_FIELDS = {"flagId", "enabled", "variant", "value", "reason", "rule", "environment", "version",
                      "decidingRule", "summary", "rules"}


@pytest.fixture(autouse=True)
def _always_fresh(settings):
    settings.FLAGS_MAX_STALENESS_MS = 0


def rollout_flag():
    create_segment("premium", {"plan": "premium"})
    return create_flag("checkout", states={
        "production": {"enabled": True, "rules": [
            {"type": "segment", "operator": "in", "value": ["premium"]},
            {"type": "percentage", "operator": "less_than", "value": 100},
        ]},
        "staging": {"enabled": True, "rules": [{"type": "geo", "operator": "in", "value": ["DE"]}]},
    })


def test_explain__every_environment_side_by_side(reader_api):
    rollout_flag()

    response = reader_api.post("/api/flags/checkout/explain",
                               {"userId": "user-1", "context": {"plan": "premium", "country": "US"}})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["flagId"], body["userId"], body["archived"]) == ("checkout", "user-1", False)
    assert list(body["environments"]) == ["development", "staging", "production"]
    production, staging, development = (body["environments"][k] for k in ("production", "staging", "development"))
    assert set(production) == EXPLANATION_FIELDS
    assert (production["enabled"], production["reason"], production["decidingRule"]) == (True, "SPLIT", "rules[1]")
    assert [rule["path"] for rule in production["rules"]] == ["rules[0]", "rules[1]"]
    assert production["rules"][0]["message"] == "in segment 'premium'"
    assert production["rules"][1]["message"].startswith("in the 100% rollout (bucket ")
    assert (staging["enabled"], staging["reason"], staging["decidingRule"]) == (False, "RULE_MISMATCH", "rules[0]")
    assert staging["rules"][0] | {"message": None} == {
        "path": "rules[0]", "type": "geo", "operator": "in", "matched": False, "attribute": "country", "value": "US",
        "message": None}
    assert (development["reason"], development["decidingRule"], development["rules"]) == ("DISABLED", None, [])


def test_explain__the_listed_environments_only__and_the_same_answer_as_evaluate(keys, reader_api):
    rollout_flag()
    context = {"plan": "free"}

    body = reader_api.post("/api/flags/checkout/explain",
                           {"userId": "user-1", "context": context, "environments": ["production"]}).json()
    evaluated = Client(keys["sdk"]).post("/api/evaluate", {"flagId": "checkout", "userId": "user-1",
                                                           "context": context}).json()

    assert list(body["environments"]) == ["production"]
    explained = body["environments"]["production"]
    assert {k: explained[k] for k in evaluated} == evaluated
    assert explained["summary"] == "rules[0] did not match: segment 'premium' did not match"
    condition = explained["rules"][0]["rules"][0]["rules"][0]
    assert condition | {"message": None} == {
        "path": "segments.premium.conditions[0]", "type": "custom", "operator": "equals", "matched": False,
        "attribute": "plan", "value": "free", "message": None}


def test_explain__writes_nothing_and_counts_no_evaluation(reader_api):
    rollout_flag()
    before = db_state()

    assert reader_api.post("/api/flags/checkout/explain", {"userId": "u"}).status_code == 200

    assert db_state() == before


def test_explain__anonymous_and_numeric_user_ids(reader_api):
    rollout_flag()

    anonymous = reader_api.post("/api/flags/checkout/explain",
                                {"context": {"plan": "premium"}, "environments": ["production"]}).json()
    numeric = reader_api.post("/api/flags/checkout/explain", {"userId": 42, "environments": ["production"]}).json()

    rollout = anonymous["environments"]["production"]["rules"][1]
    assert rollout["message"] == "not in the 100% rollout: no userId to bucket by"
    assert numeric["userId"] == "42"


def test_explain__archived_flag__not_found_everywhere(editor_api):
    create_flag("old", states={"production": {"enabled": True}})
    assert editor_api.delete("/api/flags/old").status_code == 204

    body = editor_api.post("/api/flags/old/explain", {"userId": "u"}).json()

    assert body["archived"] is True
    assert {e["reason"] for e in body["environments"].values()} == {"FLAG_NOT_FOUND"}


def test_explain__unknown_flag__404(reader_api):
    assert_error(reader_api.post("/api/flags/ghost/explain", {"userId": "u"}), 404, "not_found")


@pytest.mark.parametrize("body, fields", [
    ({"userId": True}, ["userId"]),
    ({"userId": ["u"]}, ["userId"]),
    ({"userId": "u", "context": "US"}, ["context"]),
    ({"userId": "u", "environments": []}, ["environments"]),
    ({"userId": "u", "environments": "production"}, ["environments"]),
    ({"userId": "u", "environments": ["production", 7]}, ["environments[1]"]),
    ({"userId": "u", "environments": ["production", "nope"]}, ["environments[1]"]),
    ({"userId": "u", "flagId": "checkout"}, ["flagId"]),
    (["u"], [""]),
])
def test_explain__bad_input__400_with_field_paths(reader_api, body, fields):
    rollout_flag()

    assert_error(reader_api.post("/api/flags/checkout/explain", body), 400, "validation_error", *fields)


def test_explain__not_json__400(reader_api):
    rollout_flag()

    response = reader_api.post("/api/flags/checkout/explain", "{not json")

    assert response.status_code == 400 and response.json()["error"]["code"] == "parse_error"


def test_explain__sdk_key_403_no_key_401__it_reveals_rules(keys):
    rollout_flag()

    assert_error(Client(keys["sdk"]).post("/api/flags/checkout/explain", {"userId": "u"}), 403, "permission_denied")
    assert_error(Client().post("/api/flags/checkout/explain", {"userId": "u"}), 401, "not_authenticated")


def test_explain__staff_session_with_view_flag__allowed_without__403(db):
    rollout_flag()
    viewer = user_with("viewer", ["flags.view_flag"])
    viewer.is_staff = True
    viewer.save()
    nobody = user_with("nobody", [p for p in EDIT_PERMS if p != "flags.view_flag"])
    allowed, refused = Client(), Client()
    allowed.force_login(viewer)
    refused.force_login(nobody)

    assert allowed.post("/api/flags/checkout/explain", {"userId": "u"}).status_code == 200
    assert_error(refused.post("/api/flags/checkout/explain", {"userId": "u"}), 403, "permission_denied")
    assert "flags.view_flag" in READ_PERMS


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_explain__every_vector_over_rest__agrees_with_evaluate(path, keys, reader_api):
    document = json.loads(path.read_text())
    refused = load(document, path.stem)
    sdk = Client(keys["sdk"])
    states = {state["key"]: state for state in document["flags"]}
    problems = []
    for case in document["cases"]:
        if (path.stem, case["flagId"]) in refused:
            continue
        if case["flagId"] not in states:  # an unknown flag: 404 here, FLAG_NOT_FOUND in the engine tests
            continue
        evaluated = sdk.post("/api/evaluate", {"flagId": case["flagId"], "userId": case["userId"],
                                               "context": case["context"]}).json()
        response = reader_api.post(f"/api/flags/{case['flagId']}/explain", {
            "userId": case["userId"], "context": case["context"], "environments": ["production"]})
        assert response.status_code == 200, (case["description"], response.content)
        explained = response.json()["environments"]["production"]
        problems += [f"{case['description']}: {p}"
                     for p in check(explained, evaluated, states[case["flagId"]], document["segments"])]
    assert not problems, "\n".join(problems)


def test_explain__nan_and_infinity_in_the_context__answered_not_a_500(reader_api):
    create_flag("age", states={"production": {"enabled": True, "rules": [
        {"type": "custom", "field": "age", "operator": "gte", "value": 18}]}})

    response = reader_api.post("/api/flags/age/explain", '{"userId": "u", "context": {"age": NaN, "x": [Infinity]},'
                               ' "environments": ["production"]}')

    assert response.status_code == 200, response.content
    rule = response.json()["environments"]["production"]["rules"][0]
    assert (rule["matched"], rule["value"]) == (False, "NaN")
