"""Reads of scheduled changes and plans (REST, pages, admin)."""

from zoneinfo import ZoneInfo

from changes.models import RolloutPlan, ScheduledChange, Status
from flags.errors import NotFound


def scheduled_change_list(*, flag=None, environment=None, status=None):
    changes = ScheduledChange.objects.select_related("flag", "environment").order_by("run_at", "id")
    if flag:
        changes = changes.filter(flag__key=flag)
    if environment:
        changes = changes.filter(environment__key=environment)
    if status:
        changes = changes.filter(status=status)
    return changes


def scheduled_change_get(change_id):
    change = scheduled_change_list().filter(pk=change_id).first()
    if change is None:
        raise NotFound(f"Scheduled change #{change_id} not found.")
    return change


def upcoming_for_flag(flag):
    """The flag's pending changes, soonest first: the flag page's timeline."""
    return list(ScheduledChange.objects.filter(flag=flag, status=Status.PENDING)
                .select_related("environment", "plan").order_by("run_at", "id"))


def recent_for_flag(flag, limit=5):
    return list(ScheduledChange.objects.filter(flag=flag).exclude(status=Status.PENDING)
                .select_related("environment").order_by("-updated_at", "-id")[:limit])


def rollout_plan_list():
    return RolloutPlan.objects.select_related("flag", "environment").prefetch_related("steps").order_by("-id")


def rollout_plan_get(plan_id):
    plan = rollout_plan_list().filter(pk=plan_id).first()
    if plan is None:
        raise NotFound(f"Rollout plan #{plan_id} not found.")
    return plan


def local_time(moment, zone):
    """`moment` in the zone its author chose, e.g. "2026-12-07 09:00 CET (Europe/Berlin)"."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()} ({zone})"
