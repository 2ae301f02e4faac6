"""offVariant over REST: written per environment, validated, audited, in the snapshot, evaluated."""

import pytest
from feature_flag_client.engine import compile_snapshot

from audit.models import AuditEntry

from .conftest import assert_error, create_flag

pytestmark = pytest.mark.django_db

VARIANTS = [{"key": "new", "weight": 100, "value": "green"}, {"key": "old", "weight": 0, "value": {"c": 1}}]


def mv(key="f", **kwargs):
    return create_flag(key, name=key, kind="multivariate", variants=VARIANTS, **kwargs)


def test_patch_sets_off_variant__shown_audited_and_served_while_off(editor_api, sdk_api):
    mv()
    response = editor_api.patch("/api/flags/f?environment=production", {"offVariant": "old"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["offVariant"] == "old"
    assert body["states"]["production"]["offVariant"] == "old"
    assert body["states"]["staging"]["offVariant"] == ""
    entry = AuditEntry.objects.filter(action="flag.updated", target_key="f").latest("id")
    assert (entry.before["offVariant"], entry.after["offVariant"]) == ("", "old")

    result = sdk_api.post("/api/evaluate", {"flagId": "f", "userId": "alice"}).json()
    assert (result["enabled"], result["variant"], result["value"], result["reason"]) == (False, "old", {"c": 1}, "DISABLED")

    # SDK local mode compiles the snapshot it reads: the same answer
    payload = sdk_api.get("/api/sdk/snapshot").json()
    [state] = [s for s in payload["flags"] if s["key"] == "f"]
    assert state["offVariant"] == "old"
    local = compile_snapshot(flags=payload["flags"], segments=payload["segments"],
                             environment=payload["environment"], version=payload["version"])
    assert local.evaluate("f", "alice").as_dict() == sdk_api.post(
        "/api/evaluate", {"flagId": "f", "userId": "alice"}).json()


def test_unknown_off_variant__400_field_error(editor_api):
    mv()
    error = assert_error(editor_api.patch("/api/flags/f", {"offVariant": "gone"}), 400, "validation_error",
                         "offVariant")
    assert "gone" in error["fields"]["offVariant"][0]


def test_off_variant_on_boolean_flag__400(editor_api):
    create_flag("b", name="b")
    assert_error(editor_api.patch("/api/flags/b", {"offVariant": "x"}), 400, "validation_error", "offVariant")


def test_create_with_off_variant_inline_and_per_state(editor_api):
    response = editor_api.post("/api/flags?environment=staging", {
        "key": "c", "name": "c", "kind": "multivariate", "variants": VARIANTS, "offVariant": "old",
        "states": {"production": {"offVariant": "new"}},
    })
    assert response.status_code == 201, response.content
    states = response.json()["states"]
    assert (states["staging"]["offVariant"], states["production"]["offVariant"],
            states["development"]["offVariant"]) == ("old", "new", "")
    assert_error(editor_api.post("/api/flags", {
        "key": "d", "name": "d", "kind": "multivariate", "variants": VARIANTS,
        "states": {"production": {"offVariant": "nope"}}}), 400, "validation_error", "states.production.offVariant")


def test_removing_the_off_variant_is_refused_until_another_is_chosen(editor_api):
    mv(states={"staging": {"offVariant": "old"}})
    only_new = {"variants": [VARIANTS[0]]}
    error = assert_error(editor_api.patch("/api/flags/f?environment=production", only_new), 400,
                         "validation_error", "variants")
    assert "staging" in error["fields"]["variants"][0]
    # clearing it in the same request (same environment) lets the variant go
    response = editor_api.patch("/api/flags/f?environment=staging", {**only_new, "offVariant": ""})
    assert response.status_code == 200, response.content
    assert response.json()["variants"] == [VARIANTS[0]]


def test_put_without_off_variant_resets_it(editor_api):
    mv(states={"production": {"offVariant": "old"}})
    response = editor_api.put("/api/flags/f?environment=production", {"name": "f", "enabled": False,
                                                                       "variants": VARIANTS})
    assert response.status_code == 200, response.content
    assert response.json()["offVariant"] == ""
