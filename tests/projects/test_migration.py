"""The projects migration on a database of today's shape: flags, states, segments, keys and audit
entries written before projects move into `default`, and every evaluation answers as the vectors
(tests/vectors) say, before (the engine over the very rows) and after (the server's snapshot, and
REST with a key made before the migration)."""

import hashlib
import json
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from feature_flag_client import engine

from flags import snapshot
from flags.models import ApiKey, Environment, Flag
from flagsite.api.authentication import forget_api_key
from segments.models import Segment
from tests.api.conftest import Client

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

VECTORS = Path(__file__).parents[1] / "vectors"
FILES = ("variants", "segments", "user", "percentage", "states")  # flag and segment keys distinct across them
BEFORE = [("flags", "0003_flag_salt_stickiness"), ("segments", "0001_initial"), ("audit", "0005_append_only_trigger"),
          ("projects", None)]
RAW_KEY = "sdk_production_made-before-projects"


def _documents():
    return [json.loads((VECTORS / f"{name}.json").read_text()) for name in FILES]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state([t for t in targets if t[1]]).apps


def _fill_old_schema(apps):
    """Today's data, written through the pre-projects models (no project anywhere)."""
    OldEnvironment, OldFlag = apps.get_model("flags", "Environment"), apps.get_model("flags", "Flag")
    OldState, OldSegment = apps.get_model("flags", "FlagState"), apps.get_model("segments", "Segment")
    OldApiKey = apps.get_model("flags", "ApiKey")
    production = OldEnvironment.objects.get(key="production")
    for document in _documents():
        for key, conditions in document["segments"].items():
            OldSegment.objects.create(key=key, name=key, conditions=conditions)
        for state in document["flags"]:
            flag = OldFlag.objects.create(key=state["key"], name=state["key"], kind=state.get("kind", "boolean"),
                                          variants=state.get("variants", []), salt=state.get("salt", ""),
                                          stickiness=state.get("stickiness", ""))
            for env in OldEnvironment.objects.all():
                OldState.objects.create(flag=flag, environment=env, enabled=state["enabled"],
                                        killed=state.get("killed", False), rules=state.get("rules", []),
                                        version=state.get("version", 1))
    OldApiKey.objects.create(name="old", kind="sdk", environment=production, prefix=RAW_KEY[:12],
                             key_hash=hashlib.sha256(RAW_KEY.encode()).hexdigest(), created_at=timezone.now())
    return production.version


def test_migration__todays_data_in_default__every_vector_evaluates_as_before():
    apps = _migrate(BEFORE)
    version = _fill_old_schema(apps)
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    snapshot.reset()
    forget_api_key()

    assert set(Flag.all_objects.values_list("project_id", flat=True)) == {"default"}
    assert set(Segment.all_objects.values_list("project_id", flat=True)) == {"default"}
    assert set(Environment.all_objects.values_list("project_id", flat=True)) == {"default"}
    assert list(ApiKey.all_objects.values_list("project_id", "narrowed")) == [("default", False)]

    server = snapshot.get_snapshot("production")
    client = Client(RAW_KEY)
    for document in _documents():
        before = engine.compile_snapshot(flags=document["flags"], segments=document["segments"],
                                         environment="production", version=version)
        for case in document["cases"]:
            args = (case["flagId"], case.get("userId"), case.get("context") or {})
            old, new = before.evaluate(*args), server.evaluate(*args)
            expected = case["expected"]
            for result in (old, new):
                assert (result.enabled, result.variant, result.value, result.reason) == (
                    expected["enabled"], expected["variant"], expected["value"], expected["reason"]), case
            rest = client.post("/api/evaluate", {"flagId": case["flagId"], "userId": case.get("userId"),
                                                 "context": case.get("context") or {}})
            assert rest.status_code == 200
            assert {name: rest.json()[name] for name in expected} == expected, case
