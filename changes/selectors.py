"""Reads of scheduled changes, plans and change requests (REST, pages, admin); the writes are in
changes/services.py and changes/approvals.py."""

from zoneinfo import ZoneInfo

from changes.models import ChangeRequest, RolloutPlan, ScheduledChange, Status
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


# -- change requests ------------------------------------------------------------------------------

OPEN_STATES = (ChangeRequest.State.OPEN, ChangeRequest.State.APPROVED, ChangeRequest.State.CONFLICT)


def change_request_list(*, flag=None, environment=None, status=None, author=None):
    crs = ChangeRequest.objects.select_related("flag", "environment").prefetch_related("reviews").order_by("-id")
    if flag:
        crs = crs.filter(flag__key=flag)
    if environment:
        crs = crs.filter(environment__key=environment)
    if status == "pending":
        crs = crs.filter(status__in=OPEN_STATES)
    elif status:
        crs = crs.filter(status=status)
    if author:
        crs = crs.filter(author_label__startswith=author)
    return crs


def change_request_get(change_request_id):
    cr = change_request_list().filter(pk=change_request_id).first()
    if cr is None:
        raise NotFound(f"Change request #{change_request_id} not found.")
    return cr


def pending_for_flag(flag):
    return list(ChangeRequest.objects.filter(flag=flag, status__in=OPEN_STATES).select_related("environment"))
