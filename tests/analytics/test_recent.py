"""Recent evaluation contexts (analytics/recent.py): sampled in Recorder.record at most once per flag
per second, the last 10 per flag, sizes capped, flushed to the cache (24 h) with the counts, readable
by any other recorder or process sharing that cache; FLAGS_RECENT_CONTEXTS=False keeps nothing."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.core.cache import cache

from analytics import recent
from analytics.counters import Recorder
from tests.analytics.conftest import client_with, sdk_key
from tests.servers import ROOT, child_env

pytestmark = pytest.mark.django_db
T0 = 1_800_000_000  # a fixed second


def evaluation(flag="checkout", environment="production", enabled=True, variant=None, reason="TARGETING_MATCH"):
    return SimpleNamespace(flag_id=flag, environment=environment, enabled=enabled, variant=variant, reason=reason)


def at(second):
    return lambda: second + 0.25


@pytest.fixture(autouse=True)
def _clean_cache(settings):
    settings.FLAGS_ANALYTICS_AUTOFLUSH = False  # flushes only when a test says so
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.reset()


def read(rec, flag="checkout", now=T0 + 60):
    return rec.recent.read(flag, now=now)


def test_at_most_one_sample_per_flag_per_second(recorder):
    for n in range(5):  # five evaluations of one flag in one second: the first is kept
        recorder.record(evaluation(), f"user-{n}", {"plan": "premium", "n": n}, _time=at(T0))
    recorder.record(evaluation(flag="other"), "user-9", {"plan": "free"}, _time=at(T0))  # another flag: its own
    assert [(s["userId"], s["context"]) for s in read(recorder)] == [("user-0", {"plan": "premium", "n": 0})]
    assert [s["userId"] for s in read(recorder, "other")] == ["user-9"]
    recorder.record(evaluation(enabled=False, reason="RULE_MISMATCH"), "user-5", {"plan": "free"},
                    _time=at(T0 + 1))  # the next second: a second sample
    samples = read(recorder)
    assert [s["userId"] for s in samples] == ["user-5", "user-0"]  # newest first
    assert samples[0] == {"at": samples[0]["at"], "environment": "production", "userId": "user-5",
                          "context": {"plan": "free"}, "enabled": False, "variant": None, "reason": "RULE_MISMATCH"}
    # counting is untouched: all seven evaluations counted
    assert recorder.pending_evaluations() == 7


def test_the_last_ten_per_flag(recorder):
    for n in range(15):
        recorder.record(evaluation(), f"user-{n}", {"n": n}, _time=at(T0 + n))
    assert [s["userId"] for s in read(recorder)] == [f"user-{n}" for n in range(14, 4, -1)]
    recorder.flush()
    for n in range(15, 18):
        recorder.record(evaluation(), f"user-{n}", {"n": n}, _time=at(T0 + n))
    assert [s["userId"] for s in read(recorder)] == [f"user-{n}" for n in range(17, 7, -1)]  # cache + waiting


def test_user_id_from_the_context_or_none(recorder):
    recorder.record(evaluation(), None, {"userId": 42, "plan": "x"}, _time=at(T0))
    recorder.record(evaluation(flag="anon"), None, None, _time=at(T0))
    assert read(recorder)[0]["userId"] == "42"
    assert read(recorder, "anon")[0]["userId"] is None and read(recorder, "anon")[0]["context"] == {}


def test_flag_not_found_is_not_sampled(recorder):
    recorder.record(evaluation(flag="nope", reason="FLAG_NOT_FOUND"), "u", {"plan": "x"}, _time=at(T0))
    assert read(recorder, "nope") == []


def test_sizes_are_capped(recorder):
    context = {f"attr{n:03d}": n for n in range(100)}
    recorder.record(evaluation(flag="many"), "u" * 1000, context, _time=at(T0))
    kept = read(recorder, "many")[0]
    assert list(kept["context"]) == [f"attr{n:03d}" for n in range(recent.MAX_ATTRIBUTES)]
    assert kept["truncated"] is True and kept["userId"] == "u" * recent.MAX_STRING

    context = {"email": "x" * 5000, "k" * 500: "long name", "nested": {"a": {"b": {"c": {"d": 1}}}},
               "list": list(range(100)), "ok": True, "nan": float("nan")}
    recorder.record(evaluation(flag="big"), "u", context, _time=at(T0))
    kept = read(recorder, "big")[0]["context"]
    assert kept == {"email": "x" * recent.MAX_STRING, "nested": {"a": {"b": {"c": None}}},
                    "list": list(range(recent.MAX_ITEMS)), "ok": True, "nan": None}

    context = {f"a{n}": "y" * 190 for n in range(40)}  # 40 attributes under every cap but the total
    recorder.record(evaluation(flag="heavy"), "u", context, _time=at(T0))
    kept = read(recorder, "heavy")[0]
    assert recent.json_size(kept["context"]) <= recent.MAX_BYTES and kept["truncated"] is True
    assert list(kept["context"]) == [f"a{n}" for n in range(len(kept["context"]))]  # the first ones kept
    assert 15 <= len(kept["context"]) < 40

    small = {"plan": "premium", "country": "US"}
    recorder.record(evaluation(flag="small"), "u", small, _time=at(T0))
    assert "truncated" not in read(recorder, "small")[0]


def test_the_sample_is_a_copy(recorder):
    context = {"plan": "premium", "tags": ["a"]}
    recorder.record(evaluation(), "u", context, _time=at(T0))
    context["plan"], context["tags"][0] = "free", "b"  # the caller reuses its dict
    assert read(recorder)[0]["context"] == {"plan": "premium", "tags": ["a"]}


def test_setting_off__nothing_sampled_stored_or_shown(recorder, settings):
    recorder.record(evaluation(), "before", {"plan": "x"}, _time=at(T0))
    recorder.flush()
    settings.FLAGS_RECENT_CONTEXTS = False
    for n in range(5):
        recorder.record(evaluation(), f"user-{n}", {"email": "a@b.c"}, _time=at(T0 + 1 + n))
    assert not any(recorder.recent.pending.values())
    recorder.flush()
    assert [s["userId"] for s in cache.get(recent.cache_key("checkout"))] == ["before"]  # nothing added
    assert read(recorder) == [] and Recorder().recent.read("checkout", now=T0 + 60) == []  # nor shown
    assert recorder.pending_evaluations() == 0  # flushed: counting goes on


def test_setting_off_from_the_start__the_cache_stays_empty(recorder, settings):
    settings.FLAGS_RECENT_CONTEXTS = False
    recorder.record(evaluation(), "u", {"plan": "x"}, _time=at(T0))
    recorder.flush()
    assert cache.get(recent.cache_key("checkout")) is None


def test_survives_a_flush__another_recorder_reads_it_from_the_cache(recorder):
    recorder.record(evaluation(), "user-a", {"plan": "premium"}, _time=at(T0))
    assert Recorder().recent.read("checkout", now=T0 + 60) == []  # not flushed yet: this process only
    recorder.flush()
    assert not any(recorder.recent.pending.values())
    other = Recorder()  # another process's recorder, sharing the cache
    assert [s["userId"] for s in other.recent.read("checkout", now=T0 + 60)] == ["user-a"]
    # the other process samples and flushes too: both processes' samples, the last 10
    for n in range(12):
        other.record(evaluation(), f"other-{n}", {"n": n}, _time=at(T0 + 1 + n))
    other.flush()
    recorder.record(evaluation(), "user-b", {"plan": "free"}, _time=at(T0 + 20))
    recorder.flush()
    assert [s["userId"] for s in Recorder().recent.read("checkout", now=T0 + 60)] == [
        "user-b", *[f"other-{n}" for n in range(11, 2, -1)]]
    other.reset()


def test_kept_24_hours(recorder):
    recorder.record(evaluation(), "old", {"plan": "x"}, _time=at(T0))
    recorder.flush()
    assert [s["userId"] for s in read(recorder, now=T0 + recent.TTL_SECONDS - 5)] == ["old"]
    assert read(recorder, now=T0 + recent.TTL_SECONDS + 5) == []


def test_a_failing_cache_keeps_the_samples_for_the_next_flush(recorder):
    class Down:
        def get_many(self, keys):
            raise ConnectionError("redis down")

    recorder.record(evaluation(), "u", {"plan": "x"}, _time=at(T0))
    assert recorder.recent.flush(cache=Down()) == 0
    assert recorder.recent.flush() == 1
    assert [s["userId"] for s in Recorder().recent.read("checkout", now=T0 + 60)] == ["u"]


def test_rest_evaluations_are_sampled(db, make_env_flag):
    from analytics import counters

    counters.recorder.reset()
    make_env_flag("beta", rules=[{"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}])
    response = client_with(sdk_key("production")).post(
        "/api/evaluate", {"flagId": "beta", "userId": "user-123", "context": {"plan": "premium"}}, format="json")
    assert response.status_code == 200
    counters.flush()
    (sample,) = Recorder().recent.read("beta")
    assert (sample["userId"], sample["context"], sample["environment"], sample["enabled"]) == (
        "user-123", {"plan": "premium"}, "production", True)
    counters.recorder.reset()


@pytest.mark.parametrize("path, body", [
    ("/api/evaluate/bulk", {"userId": "user-123", "context": {"plan": "premium"}}),
    ("/ofrep/v1/evaluate/flags/beta", {"context": {"targetingKey": "user-123", "plan": "premium"}}),
    ("/ofrep/v1/evaluate/flags", {"context": {"targetingKey": "user-123", "plan": "premium"}}),
])
def test_bulk_and_ofrep_evaluations_are_sampled(db, make_env_flag, path, body):
    from analytics import counters

    counters.recorder.reset()
    make_env_flag("beta", rules=[{"type": "custom", "field": "plan", "operator": "equals", "value": "premium"}])
    make_env_flag("gamma")
    response = client_with(sdk_key("production")).post(path, body, format="json")
    assert response.status_code == 200
    samples = counters.recorder.recent.read("beta")
    assert [(s["userId"], s["context"].get("plan"), s["enabled"]) for s in samples] == [("user-123", "premium", True)]
    counters.recorder.reset()


@pytest.mark.redis  # a shared cache to read from another process: deselected on the embedded leg
def test_another_process_reads_the_flushed_samples(recorder):
    recorder.record(evaluation(), "user-a", {"plan": "premium"}, _time=at(T0))
    recorder.flush()
    code = ("import django, json, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'flagsite.settings'); "
            "django.setup(); from analytics.counters import recorder; "
            f"print(json.dumps(recorder.recent.read('checkout', now={T0 + 60})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert [(s["userId"], s["context"]) for s in json.loads(out.stdout)] == [("user-a", {"plan": "premium"})]
