"""Exposures: recorded in process when an evaluation returns a variant (REST, bulk, OFREP, gRPC:
all through analytics' Recorder.record), deduplicated, flushed, upserted: one row per (flag,
environment, user), first variant and first_seen kept, a variant change counted."""

from datetime import timedelta

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


# -- the SDK's local mode --------------------------------------------------------------------------

def local_evaluator(sdk_api, **kwargs):
    from feature_flag_client import LocalEvaluator

    evaluator = LocalEvaluator(**kwargs)
    evaluator.load(sdk_api.get("/api/sdk/snapshot").json())
    return evaluator


def report(sdk_api, evaluator):
    counts = [{"flagId": f, "variant": v, "enabled": e, "count": c}
              for (f, v, e), c in evaluator.take_counts().items()]
    return sdk_api.post("/api/sdk/metrics", {"evaluations": counts, "exposures": evaluator.take_exposures()})


def test_sdk_local_mode__its_exposures_join_the_running_experiment(sdk_api):
    """Users evaluated in process by LocalEvaluator (and so by the OpenFeature provider) count in
    the experiment running on the flag, as server evaluations do: one row per user, its variant."""
    from experiments import services as experiment_services
    from experiments.models import Experiment
    from feature_flag_client.openfeature import FlagsiteProvider
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from tests.experiments.world import checkout_flag, metrics

    checkout_flag()
    create_flag("plain", states={env: {"enabled": True} for env in ENVS})  # boolean: no exposure
    metrics()
    experiment = experiment_services.experiment_start(actor=SYSTEM, experiment=experiment_services.experiment_create(
        actor=SYSTEM, key="local", name="Local", flag="checkout", environment="production", control="control",
        primary_metric="purchase"))
    # started a minute ago: every exposure below is well after it
    Experiment.all_objects.filter(pk=experiment.pk).update(started_at=experiment.started_at - timedelta(minutes=1))
    evaluator = local_evaluator(sdk_api)
    served = {f"u{i}": evaluator.variant("checkout", f"u{i}") for i in range(30)}
    for i in range(30):
        evaluator.is_enabled("plain", f"u{i}")
        evaluator.variant("checkout", f"u{i}")  # again: deduplicated in the SDK
    evaluator.variant("checkout")  # no user: no exposure
    api.set_provider_and_wait(FlagsiteProvider(evaluator), "local-exposures")
    details = api.get_client("local-exposures").get_string_details("checkout", "", EvaluationContext("u-of"))
    assert details.error_code is None, details.error_message
    served["u-of"] = details.variant

    response = report(sdk_api, evaluator)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 92  # 31 + 30 + 1 checkout, 30 plain
    buffers.flush()
    exposures = Exposure.objects.filter(experiment=Experiment.objects.get(key="local"))
    assert dict(exposures.values_list("user_id", "variant")) == served
    assert not Exposure.objects.filter(flag__key="plain").exists()
    assert experiment.status == "running"


@pytest.mark.parametrize("exposure, field", [
    ({"variant": "purple"}, "exposures[0].variant"),
    ({"lastVariant": None}, "exposures[0].lastVariant"),
    ({"userId": ""}, "exposures[0].userId"),
    ({"firstSeen": 1}, "exposures[0].firstSeen"),
    ({"lastSeen": "soon"}, "exposures[0].lastSeen"),
    ({"changes": -1}, "exposures[0].changes"),
    ({"flagId": None}, "exposures[0].flagId"),
])
def test_sdk_report__bad_exposure__400_naming_the_field__nothing_recorded(sdk_api, exposure, field):
    import time

    mv_flag()
    now = int(time.time())
    good = {"flagId": "checkout", "userId": "u1", "variant": "blue", "lastVariant": "blue",
            "firstSeen": now, "lastSeen": now, "changes": 0}
    response = sdk_api.post("/api/sdk/metrics", {"evaluations": [{"flagId": "checkout", "variant": "blue",
                                                                  "enabled": True, "count": 1}],
                                                 "exposures": [good, {**good, **exposure}]})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field.replace("[0]", "[1]")]
    assert buffers.exposures.pending() == 0 and buffers.flush() == (0, 0)
    counters.flush()
    from analytics.models import EvaluationRollup

    assert not EvaluationRollup.objects.exists()


def test_sdk_report__exposures_of_an_unknown_flag__ignored_and_named(sdk_api):
    import time

    mv_flag()
    now = int(time.time())
    response = sdk_api.post("/api/sdk/metrics", {"evaluations": [], "exposures": [
        {"flagId": "gone", "userId": "u1", "variant": "x", "lastVariant": "x", "firstSeen": now, "lastSeen": now,
         "changes": 0}]})
    assert (response.status_code, response.json()["ignored"]) == (202, ["gone"])
    assert buffers.flush() == (0, 0)


def test_local_evaluator__bounded_exposures__dropped_counted__failed_report_given_back(sdk_api):
    mv_flag()
    evaluator = local_evaluator(sdk_api, max_exposures=5)
    for i in range(8):
        evaluator.variant("checkout", f"u{i}")
    assert (len(evaluator.exposures), evaluator.exposures.dropped) == (5, 3)
    taken = evaluator.take_exposures()
    assert [e["userId"] for e in taken] == [f"u{i}" for i in range(5)] and evaluator.take_exposures() == []
    evaluator.give_back_exposures(taken)  # the report failed: sent with the next one
    assert report(sdk_api, evaluator).status_code == 202
    buffers.flush()
    assert sorted(Exposure.objects.values_list("user_id", flat=True)) == [f"u{i}" for i in range(5)]


def ten_minutes_ago(monkeypatch):
    """Evaluations recorded from now on happen ten minutes earlier (the server's record and the
    SDK's clock): before the start, not in its own second (which counts as after it)."""
    import time

    real = time.time
    monkeypatch.setattr(counters.Recorder.record, "__defaults__", (None, None, lambda: real() - 600, next))
    monkeypatch.setattr(time, "time", lambda: real() - 600)


def test_user_evaluated_before_the_start__exposed_by_the_first_evaluation_after_it(
        sdk_api, monkeypatch, django_capture_on_commit_callbacks):
    """Users seen in the hour before an experiment starts (flushed already, or still in the
    batch) are its users from their first evaluation after the start, not from the next hour."""
    from experiments import services as experiment_services
    from experiments.models import Experiment
    from tests.experiments.world import checkout_flag, metrics

    checkout_flag()
    metrics()
    draft = experiment_services.experiment_create(actor=SYSTEM, key="soon", name="Soon", flag="checkout",
                                                  environment="production", control="control",
                                                  primary_metric="purchase")
    served = {}
    with monkeypatch.context() as m:
        ten_minutes_ago(m)
        for user in ("flushed", "pending"):
            served[user] = sdk_api.post("/api/evaluate", {"flagId": "checkout", "userId": user}).json()["variant"]
            if user == "flushed":
                buffers.flush()
    with django_capture_on_commit_callbacks(execute=True):  # as committed: every process reloads
        experiment = experiment_services.experiment_start(actor=SYSTEM, experiment=draft)
    for user in ("flushed", "pending", "new"):
        served[user] = sdk_api.post("/api/evaluate", {"flagId": "checkout", "userId": user}).json()["variant"]
    buffers.flush()
    owned = Exposure.objects.filter(experiment=Experiment.objects.get(key="soon"))
    assert dict(owned.values_list("user_id", "variant")) == served
    started = int(experiment.started_at.timestamp())
    assert all(x.first_seen.timestamp() >= started for x in owned)
    # what they were served before the start stays the flag's
    assert sorted(Exposure.objects.filter(experiment=None).values_list("user_id", flat=True)) == ["flushed", "pending"]


def test_sdk_local_mode__user_seen_before_the_start__exposed_after_it_once_the_snapshot_says_so(
        sdk_api, monkeypatch, django_capture_on_commit_callbacks):
    from experiments import services as experiment_services
    from experiments.models import Experiment
    from tests.experiments.world import checkout_flag, metrics

    checkout_flag()
    metrics()
    draft = experiment_services.experiment_create(actor=SYSTEM, key="soon", name="Soon", flag="checkout",
                                                  environment="production", control="control",
                                                  primary_metric="purchase")
    evaluator = local_evaluator(sdk_api)
    with monkeypatch.context() as m:
        ten_minutes_ago(m)
        variant = evaluator.variant("checkout", "u1")
    with django_capture_on_commit_callbacks(execute=True):
        experiment_services.experiment_start(actor=SYSTEM, experiment=draft)
    evaluator.load(sdk_api.get("/api/sdk/snapshot").json())  # what its stream or poll would deliver
    assert evaluator.variant("checkout", "u1") == variant
    assert report(sdk_api, evaluator).status_code == 202
    buffers.flush()
    assert list(Exposure.objects.filter(experiment=Experiment.objects.get(key="soon"))
                .values_list("user_id", "variant")) == [("u1", variant)]
    assert list(Exposure.objects.filter(experiment=None).values_list("user_id", flat=True)) == ["u1"]
