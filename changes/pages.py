"""The flag page's scheduling: its timeline of upcoming changes (flags/pages.py renders it with
timeline()) and two small POST forms calling the services, as the other page actions do."""

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.actor import Actor
from changes import selectors, services
from changes.models import Operation
from flags.errors import ServiceError
from flags.pages import CHANGE_FLAGS, _flag_or_404, staff_required

SCHEDULE = CHANGE_FLAGS + ("changes.add_scheduledchange",)  # as POST /api/scheduled-changes
CANCEL = ("changes.change_scheduledchange",)
FORM_ACTIONS = [(op.value, op.label) for op in (Operation.ENABLE, Operation.DISABLE, Operation.ROLLOUT,
                                                Operation.KILL, Operation.RESTORE)]


def timeline(flag):
    """Upcoming changes (soonest first) and the last few decided, each with its author's local time."""
    def row(change):
        return {"change": change, "local": selectors.local_time(change.run_at, change.timezone)}

    return {"upcoming": [row(c) for c in selectors.upcoming_for_flag(flag)],
            "decided": [row(c) for c in selectors.recent_for_flag(flag)], "actions": FORM_ACTIONS,
            "interval": f"{services.interval_seconds():g}"}


def _payload(post, operation):
    if operation in (Operation.KILL, Operation.RESTORE):
        return {"reason": post.get("reason", "").strip()}
    if operation == Operation.ROLLOUT:
        raw = post.get("percentage", "").strip()
        return {"percentage": int(raw) if raw.isdigit() else raw}
    return {}


@require_POST
@staff_required(perms=SCHEDULE)
def schedule(request, key):
    flag = _flag_or_404(key)
    operation = request.POST.get("action", "")
    try:
        change = services.scheduled_change_create(
            actor=Actor.from_request(request), flag=flag, environment=request.POST.get("environment", ""),
            operation=operation, payload=_payload(request.POST, operation), run_at=request.POST.get("run_at", ""),
            timezone=request.POST.get("timezone", "").strip() or "UTC")
    except ServiceError as exc:
        messages.error(request, f"Not scheduled: {exc}")
    else:
        messages.success(request, f"Scheduled change #{change.pk}: {change.get_operation_display()} in "
                                  f"{change.environment.key} at {selectors.local_time(change.run_at, change.timezone)}.")
    return redirect(reverse("page-flag", args=[flag.key]) + "#schedule-title")


@require_POST
@staff_required(perms=CANCEL)
def cancel(request, key, change_id):
    flag = _flag_or_404(key)
    try:
        change = selectors.scheduled_change_get(change_id)
        services.scheduled_change_cancel(actor=Actor.from_request(request), change=change)
    except ServiceError as exc:
        messages.error(request, f"Not cancelled: {exc}")
    else:
        messages.success(request, f"Cancelled scheduled change #{change_id}.")
    return redirect(reverse("page-flag", args=[flag.key]) + "#schedule-title")
