"""Scheduling, applying (once, on time, after a downtime), cancelling and rescheduling, through the
services and a controllable clock."""

import datetime as dt

import pytest

from audit.models import AuditEntry
from changes import services
from changes.models import ScheduledChange
from flags import services as flag_services
from flags.errors import Conflict, ValidationFailed
from flags.models import FlagState

pytestmark = pytest.mark.django_db


def state(flag, env="production"):
    return FlagState.objects.get(flag__key=flag.key, environment__key=env)


def schedule(author, flag, clock, operation="enable", payload=None, env="production", **delta):
    return services.scheduled_change_create(actor=author, flag=flag, environment=env, operation=operation,
                                            payload=payload, run_at=clock.later(**(delta or {"hours": 1})))


@pytest.fixture
def off_flag(make_flag):
    return make_flag("checkout", enabled=False)


def test_schedule__applied_once_at_its_time__audited_with_number_and_author(author, off_flag, clock):
    change = schedule(author, off_flag, clock, hours=1)
    assert (change.status, change.base_version, change.run_at) == ("pending", 1, clock.later(hours=1))
    assert AuditEntry.objects.filter(action="schedule.created", target_key="checkout").count() == 1

    clock.advance(minutes=59)
    assert services.apply_due() == []
    assert state(off_flag).enabled is False

    clock.advance(minutes=1, seconds=5)
    assert services.apply_due() == [(change.pk, "applied")]
    assert services.apply_due() == []  # exactly once
    change.refresh_from_db()
    assert (change.status, change.result, change.applied_at) == ("applied", "applied", clock.now)
    assert state(off_flag).enabled is True
    toggled = AuditEntry.objects.filter(action="flag.toggled", target_key="checkout")
    assert [(e.actor, e.actor_user_id, e.environment) for e in toggled] == [
        (f"scheduled change #{change.pk} by alice", author.user.pk, "production")]


def test_on_time__a_beat_every_interval_applies_within_one_interval_and_not_late(author, off_flag, clock, settings):
    settings.FLAGS_SCHEDULED_CHANGES_INTERVAL = 30
    change = schedule(author, off_flag, clock, minutes=10, seconds=7)
    start = clock.now
    while ScheduledChange.objects.get(pk=change.pk).status == "pending":
        clock.advance(seconds=30)  # one beat
        services.apply_due()
    change.refresh_from_db()
    assert dt.timedelta(0) <= change.applied_at - change.run_at < dt.timedelta(seconds=30)
    assert change.applied_at - start == dt.timedelta(minutes=10, seconds=30)
    assert "late" not in AuditEntry.objects.get(action="flag.toggled").actor


def test_downtime__missed_change_unchanged_flag__applied_late_with_the_note(author, off_flag, clock):
    change = schedule(author, off_flag, clock, hours=1)
    clock.advance(hours=5, minutes=3)  # the scheduler was down
    assert services.apply_due() == [(change.pk, "applied")]
    change.refresh_from_db()
    assert change.result == "applied late by 4h 3m"
    assert AuditEntry.objects.get(action="flag.toggled").actor == (
        f"scheduled change #{change.pk} by alice, applied late by 4h 3m")
    assert state(off_flag).enabled is True


def test_downtime__flag_changed_meanwhile__skipped_with_the_reason_nothing_applied(author, off_flag, clock, actor):
    change = schedule(author, off_flag, clock, operation="update", payload={"rules": [
        {"type": "user", "operator": "in", "value": ["u1"]}]}, hours=1)
    flag_services.flag_toggle(actor=actor, flag=off_flag, environment="production", enabled=True)  # by hand
    clock.advance(days=1)
    assert services.apply_due() == [(change.pk, "skipped")]
    change.refresh_from_db()
    assert change.result == "skipped: missed by 23h and the flag changed meanwhile (version 1 when scheduled, now 2)"
    assert state(off_flag).rules == []
    skipped = AuditEntry.objects.get(action="schedule.skipped")
    assert (skipped.actor, skipped.reason) == ("scheduler", change.result.removeprefix("skipped: "))


def test_downtime__kill_applies_late_even_after_a_change(author, make_flag, clock, actor):
    flag = make_flag("payments", enabled=True)
    change = schedule(author, flag, clock, operation="kill", payload={"reason": "end of campaign"}, hours=1)
    flag_services.flag_update(actor=actor, flag=flag, environment="production", data={"rules": []})
    flag_services.flag_toggle(actor=actor, flag=flag, environment="production", enabled=False)
    clock.advance(hours=3)
    assert services.apply_due() == [(change.pk, "applied")]
    killed = state(flag)
    assert (killed.killed, killed.killed_reason) == (True, "end of campaign")
    entry = AuditEntry.objects.get(action="flag.killed")
    assert entry.actor == f"scheduled change #{change.pk} by alice, applied late by 2h"


def test_on_time__applies_even_if_the_flag_changed_since(author, off_flag, clock, actor):
    change = schedule(author, off_flag, clock, operation="update", payload={"enabled": True, "rules": [
        {"type": "geo", "operator": "in", "value": ["DE"]}]}, hours=1)
    flag_services.flag_update(actor=actor, flag=off_flag, environment="production", data={"description": "x"})
    clock.advance(hours=1)
    assert services.apply_due() == [(change.pk, "applied")]
    assert state(off_flag).rules == [{"type": "geo", "operator": "in", "value": ["DE"]}]


def test_cancel__never_applies__audited__cannot_cancel_twice(author, off_flag, clock):
    change = schedule(author, off_flag, clock, hours=1)
    services.scheduled_change_cancel(actor=author, change=change, reason="not yet")
    clock.advance(hours=2)
    assert services.apply_due() == []
    assert state(off_flag).enabled is False
    change.refresh_from_db()
    assert (change.status, change.result) == ("cancelled", "cancelled by alice: not yet")
    assert AuditEntry.objects.get(action="schedule.cancelled").reason == "not yet"
    with pytest.raises(Conflict):
        services.scheduled_change_cancel(actor=author, change=change)


def test_reschedule__applies_at_the_new_time_only(author, off_flag, clock):
    change = schedule(author, off_flag, clock, hours=1)
    services.scheduled_change_reschedule(actor=author, change=change, run_at="2026-12-04T12:00:00",
                                         timezone="Europe/Berlin")
    change.refresh_from_db()
    assert (change.run_at, change.timezone) == (dt.datetime(2026, 12, 4, 11, 0, tzinfo=dt.UTC),
                                                "Europe/Berlin")
    clock.advance(hours=1)
    assert services.apply_due() == []
    clock.set(change.run_at)
    assert services.apply_due() == [(change.pk, "applied")]
    assert AuditEntry.objects.filter(action="schedule.rescheduled").count() == 1
    with pytest.raises(Conflict):
        services.scheduled_change_reschedule(actor=author, change=change, run_at=clock.later(hours=1).isoformat())


def test_invalid_change__refused_at_creation_as_the_direct_write_would__nothing_written(author, off_flag, clock,
                                                                                      world):
    before = world.snapshot()
    cases = [
        ("update", {"rules": [{"type": "geo", "operator": "near", "value": ["US"]}]}, "change.rules[0].operator"),
        ("update", {"colour": "red"}, "change.colour"),
        ("update", {"enabled": "yes"}, "change.enabled"),
        ("kill", {}, "change.reason"),
        ("rollout", {"percentage": 101}, "change.percentage"),
        ("explode", {}, "change.action"),
    ]
    for operation, payload, path in cases:
        with pytest.raises(ValidationFailed) as refused:
            schedule(author, off_flag, clock, operation=operation, payload=payload)
        assert path in refused.value.fields, (operation, refused.value.fields)
    with pytest.raises(ValidationFailed) as refused:
        services.scheduled_change_create(actor=author, flag="nope", environment="moon", operation="enable",
                                         run_at=clock.later(seconds=-1), timezone="Mars/Olympus")
    assert set(refused.value.fields) == {"flag", "environment", "runAt", "timezone"}
    assert world.snapshot() == before
    assert ScheduledChange.objects.count() == 0


def test_author_loses_the_permission__change_skipped_not_applied(author, off_flag, clock):
    change = schedule(author, off_flag, clock, hours=1)
    author.user.user_permissions.clear()
    clock.advance(hours=1)
    assert services.apply_due() == [(change.pk, "skipped")]
    assert state(off_flag).enabled is False
    assert ScheduledChange.objects.get(pk=change.pk).result == "skipped: alice may no longer make this change"


def test_failure_at_apply_time__status_failed_with_the_error(author, make_flag, clock):
    from tests.changes.conftest import grant

    author = type(author)(label=author.label, user=grant(author.user, "flags.delete_flag"))
    required = make_flag("base-flag")
    change = schedule(author, required, clock, operation="archive", hours=1)
    make_flag("dependent", rules=[{"type": "flag", "field": "base-flag", "operator": "enabled"}])
    clock.advance(hours=1)
    assert services.apply_due() == [(change.pk, "failed")]
    change.refresh_from_db()
    assert change.result.startswith("failed: Cannot archive flag 'base-flag': it is a prerequisite of dependent")
    assert AuditEntry.objects.filter(action="schedule.failed").count() == 1
    assert AuditEntry.objects.filter(action="flag.archived").count() == 0


def test_archive_needs_the_delete_permission_to_be_scheduled(django_user_model, off_flag, clock):
    from django.core.exceptions import PermissionDenied

    from audit.actor import Actor
    from tests.changes.conftest import SCHEDULER_PERMS, grant

    editor = grant(django_user_model.objects.create_user(username="edith"), *SCHEDULER_PERMS)  # no delete_flag
    with pytest.raises(PermissionDenied):
        schedule(Actor.for_user(editor), off_flag, clock, operation="archive")
