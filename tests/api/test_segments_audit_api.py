"""Contract tests for /api/segments*, /api/audit*, /api/health, /api/schema, /api/docs."""

import pytest
from django.core.cache import cache

from audit.models import AuditEntry
from flags.models import Environment

from .conftest import assert_error, create_flag, create_segment, db_state

pytestmark = pytest.mark.django_db

SEGMENT_FIELDS = {"id", "key", "name", "description", "conditions", "createdAt", "updatedAt"}


def test_segment_create__shorthand_and_rule_list(editor_api):
    versions = dict(Environment.objects.values_list("key", "version"))

    short = editor_api.post("/api/segments", {"name": "Premium users", "conditions": {"plan": "premium"}})
    full = editor_api.post("/api/segments", {"key": "eu", "name": "EU", "conditions": [
        {"type": "geo", "operator": "in", "value": ["DE", "FR"]}]})

    assert short.status_code == 201, short.content
    assert set(short.json()) == SEGMENT_FIELDS
    assert (short.json()["key"], short.json()["conditions"]) == ("premium-users", {"plan": "premium"})
    assert full.status_code == 201, full.content
    assert full.json()["id"] == "eu"
    # segments are global: every environment moves
    assert all(Environment.objects.get(key=k).version > v for k, v in versions.items())
    assert AuditEntry.objects.filter(action="segment.created").count() == 2


def test_segment_list_get_update_delete(editor_api):
    create_segment("b-seg", {"plan": "b"})
    create_segment("a-seg", {"plan": "a"})

    listed = editor_api.get("/api/segments").json()
    got = editor_api.get("/api/segments/a-seg").json()
    patched = editor_api.patch("/api/segments/a-seg", {"description": "desc"})
    put = editor_api.put("/api/segments/b-seg", {"name": "B", "conditions": [{"type": "user", "operator": "in", "value": ["u1"]}]})
    deleted = editor_api.delete("/api/segments/a-seg")

    assert listed["count"] == 2 and [s["key"] for s in listed["results"]] == ["a-seg", "b-seg"]
    assert got["conditions"] == {"plan": "a"}
    assert patched.status_code == 200 and patched.json()["description"] == "desc"
    assert patched.json()["conditions"] == {"plan": "a"}
    assert put.status_code == 200 and put.json()["name"] == "B"
    assert deleted.status_code == 204
    assert_error(editor_api.get("/api/segments/a-seg"), 404, "not_found")


def test_segment_delete__referenced_by_a_flag__refused_and_nothing_written(editor_api):
    create_segment("vip", {"plan": "vip"})
    create_flag("perk", states={"staging": {"enabled": True, "rules": [{"type": "segment", "operator": "in", "value": ["vip"]}]}})
    before = db_state()

    response = editor_api.delete("/api/segments/vip")

    error = assert_error(response, 409, "conflict")
    assert "perk" in error["message"]  # names the flags that still use it
    assert db_state() == before


def test_segment_update__change_reaches_evaluation(editor_api, sdk_api, settings):
    settings.FLAGS_MAX_STALENESS_MS = 0
    create_segment("vip", {"plan": "vip"})
    create_flag("perk", states={"production": {"enabled": True, "rules": [{"type": "segment", "operator": "in", "value": ["vip"]}]}})
    body = {"flagId": "perk", "userId": "u", "context": {"plan": "gold"}}
    assert sdk_api.post("/api/evaluate", body).json()["enabled"] is False

    assert editor_api.patch("/api/segments/vip", {"conditions": {"plan": "gold"}}).status_code == 200

    assert sdk_api.post("/api/evaluate", body).json()["enabled"] is True


def test_audit__newest_first_with_limit(reader_api, editor_api):
    create_flag("f")
    editor_api.patch("/api/flags/f/toggle")
    editor_api.post("/api/flags/f/kill-switch", {"reason": "why", "environments": ["production"]})

    body = reader_api.get("/api/audit?limit=2").json()

    assert body["count"] >= 3
    assert [e["action"] for e in body["results"]] == ["flag.killed", "flag.toggled"]
    entry = body["results"][0]
    assert set(entry) >= {"id", "createdAt", "actor", "action", "targetType", "targetKey", "environment",
                          "before", "after", "reason", "requestId", "ip", "hash", "prevHash"}
    assert (entry["reason"], entry["targetKey"], entry["environment"]) == ("why", "f", "production")
    assert entry["actor"].startswith("editor")
    assert entry["prevHash"] == body["results"][1]["hash"]  # the chain, newest first


def test_audit_flag__only_that_flag(reader_api, editor_api):
    create_flag("f")
    create_flag("g")
    editor_api.patch("/api/flags/g/toggle")

    body = reader_api.get("/api/audit/flag/f").json()

    assert body["count"] == 1
    assert [(e["targetKey"], e["action"]) for e in body["results"]] == [("f", "flag.created")]


def test_health__ok(anon):
    response = anon.get("/api/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}


def test_health__cache_down__200_degraded_with_detail(anon, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache is down")

    monkeypatch.setattr(cache, "set", broken)

    response = anon.get("/api/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == "unavailable"


def test_health__database_down__503_detail_kept_out_of_the_body(anon, monkeypatch):
    from django.db import OperationalError

    from flagsite.api import health

    def broken():
        raise OperationalError("connection refused")

    monkeypatch.setitem(health.CHECKS, "database", broken)

    response = anon.get("/api/health")

    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["checks"]["cache"], body["error"]["code"]) == ("unavailable", "ok", "unavailable")
    assert body["checks"]["database"] == "unavailable"  # the error text is for logs and /metrics
    assert health.last_errors["database"] == "OperationalError: connection refused"


def test_schema_and_docs(anon):
    schema = anon.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = anon.get("/api/docs")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/flags", "/api/flags/{key}", "/api/flags/{key}/toggle", "/api/flags/{key}/kill-switch",
                 "/api/evaluate", "/api/evaluate/bulk", "/api/segments", "/api/audit", "/api/sdk/snapshot", "/api/health"):
        assert path in paths, path
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()
