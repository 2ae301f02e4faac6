"""Exposures: recorded in process when an evaluation returns a variant (REST, bulk, OFREP, gRPC:
all through analytics' Recorder.record), deduplicated, flushed, upserted: one row per (flag,
environment, user), first variant and first_seen kept, a variant change counted."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics import counters
from experiments import buffers
from experiments.models import Exposure
from flags import services, snapshot
from tests.api.conftest import SYSTEM, create_flag

pytestmark = pytest.mark.django_db

ENVS = ("development", "staging", "production")


def mv_flag(key="checkout", variants=("blue", "green")):
    weight = 100 // len(variants)
    return create_flag(key, kind="multivariate",
                       variants=[{"key": v, "weight": weight, "value": v} for v in variants],
                       states={env: {"enabled": True} for env in ENVS})


def rows():
    return sorted(Exposure.objects.values_list("flag__key", "environment__key", "user_id", "variant",
                                               "last_variant", "variant_changes"))


def test_rest_evaluations__one_row_per_user__nothing_written_on_the_request(sdk_api):
    mv_flag()
    create_flag("plain", states={env: {"enabled": True} for env in ENVS})  # boolean: no exposure
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            for user in ("u1", "u2"):
                assert sdk_api.post("/api/evaluate", {"flagId": "checkout", "userId": user}).status_code == 200
                assert sdk_api.post("/api/evaluate", {"flagId": "plain", "userId": user}).status_code == 200
        sdk_api.post("/api/evaluate/bulk", {"userId": "u3"})
        sdk_api.post("/ofrep/v1/evaluate/flags/checkout", {"context": {"targetingKey": "u4"}})
        sdk_api.post("/api/evaluate", {"flagId": "checkout"})  # no user: no exposure
    assert not [q for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
    assert buffers.exposures.pending() == 4  # deduplicated in process
    assert Exposure.objects.count() == 0
    buffers.flush()
    got = rows()
    assert [(flag, env, user) for flag, env, user, *_ in got] == [
        ("checkout", "production", u) for u in ("u1", "u2", "u3", "u4")]
    assert all(first == last and first in ("blue", "green") and changes == 0 for *_, first, last, changes in got)


def test_variant_change__counted_first_variant_and_first_seen_kept(sdk_api):
    mv_flag()
    sdk_api.post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    buffers.flush()
    [before] = Exposure.objects.all()
    first = before.variant
    other = "green" if first == "blue" else "blue"
    # the split changes: everyone gets the other variant now
    services.flag_update(actor=SYSTEM, flag=before.flag, environment="production",
                         data={"variants": [{"key": other, "weight": 100, "value": other},
                                            {"key": first, "weight": 0, "value": first}]})
    snapshot.reset()
    sdk_api.post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    buffers.flush()
    [after] = Exposure.objects.all()
    assert (after.variant, after.last_variant, after.variant_changes, after.variant_changed) == (first, other, 1, True)
    assert after.first_seen == before.first_seen and after.last_seen >= before.last_seen
    sdk_api.post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})  # same variant again: deduplicated
    buffers.flush()
    assert Exposure.objects.get().variant_changes == 1


def test_changes_within_one_batch_and_across_batches__counted():
    flag = mv_flag()
    recorder = counters.recorder

    class Result:
        reason, enabled, environment, flag_id = "SPLIT", True, "production", flag.key

        def __init__(self, variant):
            self.variant = variant

    t = 1_800_000_000
    for second, variant in ((t, "blue"), (t + 1, "green"), (t + 2, "blue")):
        recorder.record(Result(variant), "u9", None, _time=lambda s=second: s)
    buffers.flush()
    assert rows() == [("checkout", "production", "u9", "blue", "blue", 2)]
    recorder.record(Result("green"), "u9", None, _time=lambda: t + 3)
    buffers.flush()
    assert rows() == [("checkout", "production", "u9", "blue", "green", 3)]


def test_exposures_off__none_recorded(sdk_api, settings):
    settings.FLAGS_EXPOSURES = False
    mv_flag()
    sdk_api.post("/api/evaluate", {"flagId": "checkout", "userId": "u1"})
    assert buffers.flush() == (0, 0)


def test_unknown_flag_in_a_batch__dropped():
    from experiments.services import exposures_upsert

    mv_flag()
    assert exposures_upsert(rows=[["production", "gone", "u", "a", "a", 1, 1, 0],
                                  ["production", "checkout", "u", "blue", "blue", 1, 1, 0]]) == 1
    assert rows() == [("checkout", "production", "u", "blue", "blue", 0)]


def test_same_flag_and_environment_keys_in_two_projects__each_batch_row_lands_in_its_own():
    from experiments.models import Event
    from experiments.services import events_write, exposures_upsert
    from projects import scope
    from projects import services as project_services

    mv_flag()
    project_services.project_create(actor=SYSTEM, key="team-b", name="Team B")
    with scope.using("team-b"):
        mv_flag()
    assert exposures_upsert(rows=[["production", "checkout", "u", "blue", "blue", 1, 1, 0],
                                  ["team-b.production", "checkout", "u", "green", "green", 1, 1, 0]]) == 2
    assert sorted(Exposure.objects.values_list("flag__project_id", "environment__project_id", "variant")) == [
        ("default", "default", "blue"), ("team-b", "team-b", "green")]
    assert events_write(rows=[["production", "buy", "u", 1.0, 1, {}, "e1", 1],
                              ["team-b.production", "buy", "u", 2.0, 1, {}, "e1", 1]]) == 2
    assert sorted(Event.objects.values_list("environment__project_id", "value")) == [("default", 1.0), ("team-b", 2.0)]
