"""Contract tests for /api/flags*: status codes and bodies."""

import pytest

from audit.models import AuditEntry
from flags.models import Environment, Flag

from .conftest import assert_error, create_flag, db_state

pytestmark = pytest.mark.django_db

SEED_CREATE = {
    "name": "new-feature",
    "description": "Enable new feature for beta users",
    "enabled": True,
    "environment": "production",
    "rules": [
        {"type": "geo", "operator": "in", "value": ["US", "CA"]},
        {"type": "percentage", "operator": "less_than", "value": 50},
    ],
}

FLAG_FIELDS = {
    "id", "key", "name", "description", "tags", "kind", "variants", "salt", "stickiness", "archived", "createdAt", "updatedAt", "stale",
    "environment", "enabled", "rules", "offVariant", "killed", "killedReason", "killedBy", "killedAt", "version", "states",
}


def test_create__seed_body__201_with_key_from_name_and_state_in_named_environment(editor_api):
    response = editor_api.post("/api/flags", SEED_CREATE)

    assert response.status_code == 201, response.content
    assert response["Location"] == "/api/flags/new-feature"
    body = response.json()
    assert set(body) == FLAG_FIELDS
    assert body["id"] == body["key"] == "new-feature"
    assert body["environment"] == "production"
    assert body["enabled"] is True
    assert body["rules"] == SEED_CREATE["rules"]
    assert body["description"] == "Enable new feature for beta users"
    assert set(body["states"]) == {"development", "staging", "production"}
    assert body["states"]["production"]["enabled"] is True
    assert body["states"]["development"]["enabled"] is False
    assert body["states"]["development"]["rules"] == []
    assert AuditEntry.objects.filter(action="flag.created", target_key="new-feature").count() == 1


def test_create__key_given_and_multivariate__stored_as_given(editor_api):
    response = editor_api.post("/api/flags?environment=staging", {
        "key": "checkout.color", "name": "Checkout colour", "kind": "multivariate", "tags": ["checkout"],
        "variants": [{"key": "blue", "weight": 50, "value": "#00f"}, {"key": "green", "weight": 50, "value": "#0f0"}],
        "enabled": True, "salt": "checkout-2024", "stickiness": "accountId",
    })

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["key"], body["kind"], body["tags"], body["environment"]) == (
        "checkout.color", "multivariate", ["checkout"], "staging")
    assert [v["key"] for v in body["variants"]] == ["blue", "green"]
    assert (body["salt"], body["stickiness"]) == ("checkout-2024", "accountId")
    assert body["states"]["staging"]["enabled"] is True


def test_create__name_slugified_when_no_key(editor_api):
    response = editor_api.post("/api/flags", {"name": "Dark Mode v2"})

    assert response.status_code == 201, response.content
    assert response.json()["key"] == "dark-mode-v2"
    assert response.json()["environment"] == "development"  # FLAGS_DEFAULT_ENVIRONMENT


def test_create__duplicate_key__409_and_nothing_written(editor_api):
    create_flag("dup")
    before = db_state()

    response = editor_api.post("/api/flags", {"key": "dup", "name": "Dup"})

    error = assert_error(response, 409, "conflict")
    assert "dup" in error["message"]
    assert db_state() == before


def test_create__duplicate_key_racing_another_create__409_not_500(editor_api, monkeypatch):
    """Both creates passed the existence check; the second insert hits the unique key."""
    from tests.flags.test_services import racing_create

    racing_create(monkeypatch, "raced")
    response = editor_api.post("/api/flags", {"key": "raced", "name": "Mine"})

    error = assert_error(response, 409, "conflict")
    assert error["fields"] == {"key": ["Already exists."]}
    assert Flag.objects.get(key="raced").name == "The other writer's"


def test_list__paginated_with_environment_state(reader_api):
    for i in range(3):
        create_flag(f"flag-{i}", states={"production": {"enabled": i == 1}})

    response = reader_api.get("/api/flags?environment=production&limit=2")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [f["key"] for f in body["results"]] == ["flag-0", "flag-1"]
    assert body["next"] and body["previous"] is None
    assert [f["enabled"] for f in body["results"]] == [False, True]
    assert all(f["environment"] == "production" for f in body["results"])
    second = reader_api.get("/api/flags?environment=production&limit=2&offset=2").json()
    assert [f["key"] for f in second["results"]] == ["flag-2"]


def test_list__filters_tag_enabled_search(reader_api):
    create_flag("alpha", tags=["web"], description="first", states={"staging": {"enabled": True}})
    create_flag("beta", tags=["mobile"], description="second")
    create_flag("gamma", tags=["web", "mobile"], name="Gamma search-me")

    def keys(query):
        response = reader_api.get(f"/api/flags?{query}")
        assert response.status_code == 200, response.content
        return [f["key"] for f in response.json()["results"]]

    assert keys("tag=web") == ["alpha", "gamma"]
    assert keys("environment=staging&enabled=true") == ["alpha"]
    assert keys("environment=staging&enabled=false") == ["beta", "gamma"]
    assert keys("search=SEARCH-ME") == ["gamma"]
    assert keys("search=second") == ["beta"]
    assert keys("tag=mobile&search=gam") == ["gamma"]


def test_list__archived_hidden_unless_asked(reader_api, editor_api):
    create_flag("kept")
    create_flag("old")
    assert editor_api.delete("/api/flags/old").status_code == 204

    assert [f["key"] for f in reader_api.get("/api/flags").json()["results"]] == ["kept"]
    assert [f["key"] for f in reader_api.get("/api/flags?archived=true").json()["results"]] == ["old"]


def test_list__bad_filter_values__400(reader_api):
    assert_error(reader_api.get("/api/flags?enabled=maybe"), 400, "validation_error", "enabled")
    assert_error(reader_api.get("/api/flags?environment=nope"), 400, "validation_error", "environment")


def test_get__selected_environment_and_all_states(reader_api):
    create_flag("f", states={"staging": {"enabled": True, "rules": [{"type": "user", "operator": "in", "value": ["u1"]}]}})

    body = reader_api.get("/api/flags/f?environment=staging").json()

    assert body["environment"] == "staging"
    assert body["enabled"] is True
    assert body["rules"] == [{"type": "user", "operator": "in", "value": ["u1"]}]
    assert body["states"]["production"]["enabled"] is False
    assert body["version"] == body["states"]["staging"]["version"]


def test_get__unknown__404_error_shape(reader_api):
    assert_error(reader_api.get("/api/flags/missing"), 404, "not_found")


def test_put__replaces_fields_and_state_and_bumps_version(editor_api):
    create_flag("f", description="old", tags=["a"])
    v1 = editor_api.get("/api/flags/f?environment=production").json()["version"]
    env_v = Environment.objects.get(key="production").version

    response = editor_api.put("/api/flags/f?environment=production", {
        "name": "F", "description": "new", "enabled": True, "rules": [{"type": "geo", "operator": "in", "value": ["DE"]}],
    })

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["description"], body["tags"], body["enabled"]) == ("F", "new", [], True)
    assert body["rules"] == [{"type": "geo", "operator": "in", "value": ["DE"]}]
    assert body["version"] > v1
    assert Environment.objects.get(key="production").version > env_v
    assert body["states"]["development"]["enabled"] is False


def test_put__round_trip_of_get_body_is_accepted(editor_api):
    create_flag("f")
    body = editor_api.get("/api/flags/f").json()
    body["description"] = "edited"

    response = editor_api.put("/api/flags/f", body)

    assert response.status_code == 200, response.content
    assert response.json()["description"] == "edited"


def test_put__missing_required__400_and_nothing_written(editor_api):
    create_flag("f")
    before = db_state()

    error = assert_error(editor_api.put("/api/flags/f", {"description": "x"}), 400, "validation_error", "name", "enabled")

    assert error["fields"]
    assert db_state() == before


def test_patch__partial_update_keeps_other_fields(editor_api):
    create_flag("f", description="keep me", tags=["t"])

    response = editor_api.patch("/api/flags/f?environment=staging", {"enabled": True})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["description"], body["tags"], body["enabled"]) == ("keep me", ["t"], True)
    assert body["states"]["production"]["enabled"] is False


def test_patch__key_change_refused(editor_api):
    create_flag("f")
    before = db_state()

    assert_error(editor_api.patch("/api/flags/f", {"key": "g"}), 400, "validation_error", "key")
    assert db_state() == before


def test_patch__stale_version_in_body__409_and_nothing_written(editor_api):
    create_flag("f")
    version = editor_api.get("/api/flags/f").json()["version"]
    assert editor_api.patch("/api/flags/f", {"description": "first", "version": version}).status_code == 200
    before = db_state()

    response = editor_api.patch("/api/flags/f", {"description": "second", "version": version})

    assert_error(response, 409, "conflict")
    assert db_state() == before


def test_patch__if_match_header__current_ok_stale_409(editor_api):
    create_flag("f")
    version = editor_api.get("/api/flags/f").json()["version"]

    ok = editor_api.patch("/api/flags/f", {"description": "a"}, HTTP_IF_MATCH=f'"{version}"')
    stale = editor_api.patch("/api/flags/f", {"description": "b"}, HTTP_IF_MATCH=f'"{version}"')

    assert ok.status_code == 200, ok.content
    assert_error(stale, 409, "conflict")
    assert Flag.objects.get(key="f").description == "a"
    assert_error(editor_api.patch("/api/flags/f", {"description": "c"}, HTTP_IF_MATCH="abc"), 400, "validation_error", "If-Match")


def test_delete__archives_by_default_and_hard_deletes_on_request(editor_api):
    create_flag("soft")
    create_flag("hard")

    assert editor_api.delete("/api/flags/soft").status_code == 204
    assert editor_api.delete("/api/flags/hard?hard=true").status_code == 204

    assert Flag.objects.get(key="soft").archived is True
    assert editor_api.get("/api/flags/soft").json()["archived"] is True
    assert not Flag.objects.filter(key="hard").exists()
    assert_error(editor_api.get("/api/flags/hard"), 404, "not_found")
    assert AuditEntry.objects.filter(target_key="soft", action="flag.archived").exists()
    assert AuditEntry.objects.filter(target_key="hard", action="flag.deleted").exists()


def test_unarchive__undoes_delete_and_flag_evaluates_again(editor_api, sdk_api, settings):
    settings.FLAGS_MAX_STALENESS_MS = 0
    create_flag("f", states={"production": {"enabled": True}})
    editor_api.delete("/api/flags/f")
    archived = sdk_api.post("/api/evaluate", {"flagId": "f", "userId": "u"}).json()

    response = editor_api.post("/api/flags/f/unarchive")

    assert archived["reason"] == "FLAG_NOT_FOUND"
    assert response.status_code == 200, response.content
    assert response.json()["archived"] is False
    assert sdk_api.post("/api/evaluate", {"flagId": "f", "userId": "u"}).json()["enabled"] is True


def test_toggle__flips_or_sets_in_selected_environment(editor_api):
    create_flag("f")

    flipped = editor_api.patch("/api/flags/f/toggle?environment=production")
    set_off = editor_api.patch("/api/flags/f/toggle?environment=production", {"enabled": False})

    assert flipped.status_code == 200, flipped.content
    assert flipped.json()["enabled"] is True
    assert flipped.json()["states"]["staging"]["enabled"] is False
    assert set_off.json()["enabled"] is False
    assert AuditEntry.objects.filter(target_key="f", action="flag.toggled").count() == 2


def test_kill_switch__all_environments_by_default_and_restore(editor_api):
    create_flag("f", states={env: {"enabled": True} for env in ("development", "staging", "production")})

    killed = editor_api.post("/api/flags/f/kill-switch", {"reason": "incident 42"})

    assert killed.status_code == 200, killed.content
    states = killed.json()["states"]
    assert all(s["killed"] and s["killedReason"] == "incident 42" for s in states.values())
    assert states["production"]["killedBy"]
    assert killed.json()["killed"] is True

    restored = editor_api.post("/api/flags/f/restore", {"environments": ["production"], "reason": "fixed"})

    assert restored.status_code == 200, restored.content
    states = restored.json()["states"]
    assert states["production"]["killed"] is False
    assert states["staging"]["killed"] is True
    assert states["production"]["enabled"] is True  # restore does not change enabled
    restore_entry = AuditEntry.objects.filter(target_key="f", action="flag.restored").get()
    assert (restore_entry.environment, restore_entry.reason) == ("production", "fixed")


def test_kill_switch__some_environments(editor_api):
    create_flag("f")

    body = editor_api.post("/api/flags/f/kill-switch", {"reason": "r", "environments": ["staging"]}).json()

    assert {env: s["killed"] for env, s in body["states"].items()} == {
        "development": False, "staging": True, "production": False}


def test_kill_switch__unknown_flag__404(editor_api):
    assert_error(editor_api.post("/api/flags/nope/kill-switch", {"reason": "r"}), 404, "not_found")
