"""Stepped rollout plans: "10% -> 25% -> 50% -> 100%, every weekday at 09:00 Europe/Berlin",
across a weekend and the spring-forward DST change, on a controllable clock."""

import datetime as dt

import pytest

from audit.models import AuditEntry
from changes import services
from changes.models import RolloutPlan, ScheduledChange
from flags import services as flag_services
from flags.errors import Conflict
from flags.models import FlagState

pytestmark = pytest.mark.django_db
UTC = dt.UTC
GEO = {"type": "geo", "operator": "in", "value": ["DE"]}


def rules(flag):
    return FlagState.objects.get(flag=flag, environment__key="production").rules


@pytest.fixture
def plan(author, make_flag, clock):
    # Thursday 25 March 2027, 10:00 in Berlin: today's 09:00 has passed. Europe moves to summer time
    # on Sunday 28 March (CET, UTC+1 -> CEST, UTC+2).
    clock.set(dt.datetime(2027, 3, 25, 9, 0, tzinfo=UTC))
    flag = make_flag("new-search", enabled=False, rules=[GEO])
    return services.rollout_plan_create(actor=author, flag=flag, environment="production",
                                        percentages=[10, 25, 50, 100], at="09:00", timezone="Europe/Berlin")


def steps(plan):
    return list(ScheduledChange.objects.filter(plan=plan).order_by("step"))


def test_plan__steps_on_weekdays_at_local_nine__skipping_the_weekend__across_dst(plan):
    assert [(s.step, s.payload, s.run_at) for s in steps(plan)] == [
        (1, {"percentage": 10}, dt.datetime(2027, 3, 26, 8, 0, tzinfo=UTC)),  # Fri 09:00 CET
        (2, {"percentage": 25}, dt.datetime(2027, 3, 29, 7, 0, tzinfo=UTC)),  # Mon 09:00 CEST
        (3, {"percentage": 50}, dt.datetime(2027, 3, 30, 7, 0, tzinfo=UTC)),
        (4, {"percentage": 100}, dt.datetime(2027, 3, 31, 7, 0, tzinfo=UTC)),
    ]
    assert [s.base_version for s in steps(plan)] == [1, None, None, None]  # later steps wait for the one before
    assert str(plan) == "new-search in production: 10% -> 25% -> 50% -> 100%, weekdays at 09:00 Europe/Berlin"


def test_plan__each_step_applied_on_its_day__percentage_rule_raised__plan_completed(plan, clock, author):
    for step in steps(plan):
        clock.set(step.run_at + dt.timedelta(seconds=20))
        assert services.apply_due() == [(step.pk, "applied")]
        assert rules(plan.flag) == [GEO, {"type": "percentage", "operator": "less_than",
                                          "value": step.payload["percentage"]}]
    plan.refresh_from_db()
    assert plan.status == "completed"
    state = FlagState.objects.get(flag=plan.flag, environment__key="production")
    assert state.enabled is True
    actors = list(AuditEntry.objects.filter(action="flag.updated").order_by("id").values_list("actor", flat=True))
    assert actors == [f"scheduled change #{s.pk} by alice" for s in steps(plan)]


def test_plan__downtime_over_the_weekend__missed_steps_apply_late_in_order(plan, clock):
    first, second = steps(plan)[:2]
    clock.set(dt.datetime(2027, 3, 29, 12, 0, tzinfo=UTC))  # down from Thursday to Monday noon
    assert services.apply_due() == [(first.pk, "applied"), (second.pk, "applied")]
    assert rules(plan.flag)[-1]["value"] == 25
    assert ScheduledChange.objects.get(pk=first.pk).result == "applied late by 3d 4h"


def test_plan__flag_changed_by_hand_then_a_step_missed__skipped_and_the_plan_halts(plan, clock, actor):
    first, second, _, fourth = steps(plan)
    clock.set(first.run_at)
    services.apply_due()
    flag_services.flag_toggle(actor=actor, flag=plan.flag, environment="production", enabled=False)  # trouble
    clock.set(second.run_at + dt.timedelta(hours=6))  # and the scheduler was down at Monday 09:00
    assert services.apply_due() == [(second.pk, "skipped")]
    plan.refresh_from_db()
    assert plan.status == "halted" and plan.result.startswith("plan halted: step 2 skipped: missed by 6h")
    assert [s.status for s in steps(plan)] == ["applied", "skipped", "cancelled", "cancelled"]
    clock.set(fourth.run_at)
    assert services.apply_due() == []
    assert rules(plan.flag)[-1]["value"] == 10


def test_plan_cancel__pending_steps_cancelled__audited__not_twice(plan, clock, author):
    clock.set(steps(plan)[0].run_at)
    services.apply_due()
    services.rollout_plan_cancel(actor=author, plan=plan, reason="metrics look bad")
    assert [s.status for s in steps(plan)] == ["applied", "cancelled", "cancelled", "cancelled"]
    assert RolloutPlan.objects.get(pk=plan.pk).status == "cancelled"
    assert AuditEntry.objects.get(action="rollout_plan.cancelled").reason == "metrics look bad"
    clock.advance(days=10)
    assert services.apply_due() == []
    with pytest.raises(Conflict):
        services.rollout_plan_cancel(actor=author, plan=plan)


def test_plan_daily_in_new_york__fall_back_keeps_local_time(author, make_flag, clock):
    clock.set(dt.datetime(2026, 10, 30, 20, 0, tzinfo=UTC))  # Friday; US summer time ends Sunday 1 November
    flag = make_flag("nyc")
    plan = services.rollout_plan_create(actor=author, flag=flag, environment="staging", percentages=[5, 50, 100],
                                        at="08:30", timezone="America/New_York", days="daily", start="2026-10-31")
    assert [s.run_at for s in steps(plan)] == [
        dt.datetime(2026, 10, 31, 12, 30, tzinfo=UTC),  # EDT, UTC-4
        dt.datetime(2026, 11, 1, 13, 30, tzinfo=UTC),  # EST, UTC-5
        dt.datetime(2026, 11, 2, 13, 30, tzinfo=UTC),
    ]


@pytest.mark.parametrize("bad, field", [
    ({"percentages": [50, 25]}, "percentages"), ({"percentages": []}, "percentages"),
    ({"percentages": [10, 101]}, "percentages"), ({"at": "25:00"}, "at"), ({"days": "weekends"}, "days"),
    ({"timezone": "Berlin"}, "timezone"), ({"start": "soon"}, "start"), ({"start": "9999-12-31"}, "start"),
    ({"environment": "moon"}, "environment"),
])
def test_plan_bad_input__field_error__nothing_written(author, make_flag, clock, bad, field, world):
    flag = make_flag("p")
    before = world.snapshot()
    args = {"actor": author, "flag": flag, "environment": "production", "percentages": [10, 100], "at": "09:00",
            "timezone": "UTC", **bad}
    with pytest.raises(services.ValidationFailed) as refused:
        services.rollout_plan_create(**args)
    assert list(refused.value.fields) == [field]
    assert world.snapshot() == before and RolloutPlan.objects.count() == 0
