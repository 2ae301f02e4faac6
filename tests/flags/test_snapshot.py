"""The in-process snapshot: no SQL per evaluation once warm; refreshed when the version moves."""

import pytest
from feature_flag_client import engine

from flags import services, snapshot
from flags.errors import ValidationFailed
from segments.services import segment_create

pytestmark = pytest.mark.django_db

PREMIUM = [{"type": "segment", "operator": "in", "value": ["premium"]}]


@pytest.fixture
def premium_flag(actor, make_flag):
    segment_create(actor=actor, key="premium", name="Premium", conditions={"plan": "premium"})
    return make_flag("beta-dashboard", rules=PREMIUM)


class Clock:
    def __init__(self, monkeypatch):
        self.now = 1000.0
        monkeypatch.setattr(snapshot.time, "monotonic", lambda: self.now)

    def advance(self, seconds):
        self.now += seconds


def test_get_snapshot__warm__evaluates_with_zero_queries(premium_flag, django_assert_num_queries):
    snapshot.get_snapshot("production")  # warm

    with django_assert_num_queries(0):
        for i in range(200):
            result = snapshot.get_snapshot("production").evaluate("beta-dashboard", f"user-{i}", {"plan": "premium"})
            assert result.enabled is True and result.reason == "TARGETING_MATCH"
        assert snapshot.get_snapshot("production").evaluate("beta-dashboard", "u", {"plan": "free"}).reason == \
            "RULE_MISMATCH"


def test_get_snapshot__version_moved__next_check_after_staleness_sees_the_change(actor, premium_flag, monkeypatch):
    clock = Clock(monkeypatch)
    assert snapshot.get_snapshot("production").evaluate("beta-dashboard", "u1", {"plan": "premium"}).enabled

    # another process writes: this one is not told (no on-commit hook runs in this test transaction)
    services.flag_kill(actor=actor, flag=premium_flag, reason="incident", environments=["production"])
    clock.advance(0.05)
    assert snapshot.get_snapshot("production").evaluate("beta-dashboard", "u1", {"plan": "premium"}).enabled

    clock.advance(0.06)  # past FLAGS_MAX_STALENESS_MS (100 ms)
    result = snapshot.get_snapshot("production").evaluate("beta-dashboard", "u1", {"plan": "premium"})
    assert (result.enabled, result.reason) == (False, "KILLED")


def test_get_snapshot__unchanged_version__recheck_costs_one_query(premium_flag, monkeypatch, django_assert_num_queries):
    clock = Clock(monkeypatch)
    first = snapshot.get_snapshot("production")
    clock.advance(1)
    with django_assert_num_queries(1):
        assert snapshot.get_snapshot("production") is first


def test_write_in_this_process__after_commit__visible_at_once_and_cached(
        actor, premium_flag, monkeypatch, django_capture_on_commit_callbacks, django_assert_num_queries):
    Clock(monkeypatch)  # time stands still: only the write's own hook can refresh
    snapshot.get_snapshot("production")

    with django_capture_on_commit_callbacks(execute=True):
        services.flag_toggle(actor=actor, flag=premium_flag, environment="production", enabled=False)

    assert snapshot.get_snapshot("production").evaluate("beta-dashboard", "u1", {"plan": "premium"}).reason == \
        "DISABLED"
    # a fresh process loads the payload from the shared cache: only the version check hits the database
    snapshot.reset()
    with django_assert_num_queries(1):
        assert snapshot.get_snapshot("production").evaluate("beta-dashboard", "u1", {}).reason == "DISABLED"


def test_watcher_read_before_a_write__does_not_mark_the_stale_entry_fresh(
        actor, premium_flag, monkeypatch, django_capture_on_commit_callbacks):
    # The watcher thread read the old version, then this process committed a write, then the
    # watcher reported its (older) read: the write must stay visible at once (CI saw the old
    # snapshot served for a staleness interval).
    clock = Clock(monkeypatch)
    old = snapshot.snapshot_version("production")
    polled_at = clock.now
    clock.advance(0.001)
    with django_capture_on_commit_callbacks(execute=True):
        services.flag_toggle(actor=actor, flag=premium_flag, environment="production", enabled=False)
    clock.advance(0.001)

    snapshot.mark_checked({"production": old}, polled_at)

    assert snapshot.get_snapshot("production").evaluate("beta-dashboard", "u1", {"plan": "premium"}).reason == \
        "DISABLED"


def test_segment_change__refreshes_every_environment(actor, premium_flag, monkeypatch):
    from segments.models import Segment
    from segments.services import segment_update

    clock = Clock(monkeypatch)
    assert not snapshot.get_snapshot("staging").evaluate("beta-dashboard", "u1", {"plan": "gold"}).enabled
    segment_update(actor=actor, segment=Segment.objects.get(key="premium"), data={"conditions": {"plan": "gold"}})
    clock.advance(1)
    assert snapshot.get_snapshot("staging").evaluate("beta-dashboard", "u1", {"plan": "gold"}).enabled


def test_snapshot_payload__compiles_to_the_same_answers_as_the_server(premium_flag, make_flag):
    make_flag("ab", kind="multivariate", variants=[{"key": "a", "weight": 50, "value": 1},
                                                   {"key": "b", "weight": 50, "value": 2}])
    payload = snapshot.snapshot_payload("production")
    assert payload["environment"] == "production" and payload["version"] >= 1
    assert {f["key"] for f in payload["flags"]} == {"beta-dashboard", "ab"}
    assert payload["segments"] == {"premium": [{"type": "custom", "field": "plan", "operator": "equals",
                                                "value": "premium"}]}
    sdk_side = engine.compile_snapshot(**payload)
    server = snapshot.get_snapshot("production")
    for user in ("u1", "u2", "u3", "u4"):
        for key in ("beta-dashboard", "ab"):
            assert sdk_side.evaluate(key, user, {"plan": "premium"}) == server.evaluate(key, user, {"plan": "premium"})


def test_archived_flag__not_in_snapshot(actor, premium_flag):
    services.flag_archive(actor=actor, flag=premium_flag)
    assert snapshot.get_snapshot("production").evaluate("beta-dashboard", "u1", {}).reason == "FLAG_NOT_FOUND"


def test_unknown_environment__validation_failed():
    with pytest.raises(ValidationFailed) as exc:
        snapshot.get_snapshot("moon")
    assert "environment" in exc.value.fields
