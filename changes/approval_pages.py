"""Dashboard pages for change requests: the project's pending changes (/changes/pending), one
request with its diff (a three-way view on conflict: base / current / proposed) and the forms to
review, apply, withdraw and rebase it, and the flag page's "Propose a change" form. Every form
calls changes/approvals.py, as REST does; the rules (never one's own, enough approvals, once) are
the services', never the page's."""

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit.actor import Actor
from changes import approvals
from changes.models import ChangeRequest, Operation, ProtectedEnvironment
from flags.errors import NotFound, ServiceError
from flags.pages import _flag_or_404, staff_required

VIEW = ("changes.view_changerequest",)
PROPOSE = ("changes.add_changerequest",)
AMEND = ("changes.change_changerequest",)
REVIEW = ("changes.review_changerequest",)
APPLY = ("changes.apply_changerequest",)
PROPOSE_ACTIONS = [(op.value, op.label) for op in (Operation.ENABLE, Operation.DISABLE, Operation.ROLLOUT,
                                                   Operation.RESTORE, Operation.UPDATE, Operation.ARCHIVE)]


def flag_panel(flag):
    """For the flag page: pending requests (the badge) and the protected environments."""
    return {"pending": approvals.pending_for_flag(flag), "actions": PROPOSE_ACTIONS,
            "protected": {p.environment.key: p.required_approvals
                          for p in ProtectedEnvironment.objects.select_related("environment")}}


def _request_or_404(change_request_id):
    from django.http import Http404

    try:
        return approvals.change_request_get(change_request_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None


@staff_required(perms=VIEW)
def pending(request):
    rows = [{"cr": cr, "approvals": approvals.approvers(cr), "needed": approvals.required_approvals(cr)}
            for cr in approvals.change_request_list(status="pending")]
    recent = approvals.change_request_list().exclude(status__in=approvals.OPEN_STATES)[:20]
    protected = ProtectedEnvironment.objects.select_related("environment")
    return render(request, "changes/pending.html", {"rows": rows, "recent": recent, "protected": protected})


@staff_required(perms=VIEW)
def detail(request, change_request_id):
    cr = _request_or_404(change_request_id)
    three_way = approvals.three_way(cr) if cr.status == ChangeRequest.State.CONFLICT else None
    user = request.user
    return render(request, "changes/request.html", {
        "cr": cr, "approvals": approvals.approvers(cr), "needed": approvals.required_approvals(cr),
        "reviews": list(cr.reviews.all()), "three_way": three_way,
        "diff": [{"field": k, "before": _show(d["before"]), "after": _show(d["after"])} for k, d in cr.diff.items()],
        "three_rows": [{**row, **{k: _show(row[k]) for k in ("base", "current", "proposed")}}
                       for row in (three_way or {}).get("rows", [])],
        "is_author": cr.author_id == user.pk, "is_open": cr.status in approvals.OPEN_STATES,
        "may_withdraw": approvals.may_withdraw(Actor.from_request(request), cr),
        "reviewable": cr.status in (ChangeRequest.State.OPEN, ChangeRequest.State.APPROVED),
        "audit": cr.pk,
    })


def _show(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else value


def _run(request, change_request_id, verb, call):
    cr = _request_or_404(change_request_id)
    try:
        cr = call(Actor.from_request(request), cr)
    except ServiceError as exc:
        messages.error(request, f"Change request #{change_request_id} not {verb}: {exc}")
    except PermissionError as exc:  # pragma: no cover - Forbidden is a ServiceError
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Change request #{cr.pk} {verb}: now {cr.get_status_display().lower()}.")
    return redirect(reverse("page-change-request", args=[change_request_id]))


@require_POST
@staff_required(perms=REVIEW)
def review(request, change_request_id):
    verdict = request.POST.get("verdict", "")
    return _run(request, change_request_id, "reviewed", lambda actor, cr: approvals.change_request_review(
        actor=actor, change_request=cr, verdict=verdict, comment=request.POST.get("comment", "").strip()))


@require_POST
@staff_required(perms=APPLY)
def apply(request, change_request_id):
    return _run(request, change_request_id, "applied",
                lambda actor, cr: approvals.change_request_apply(actor=actor, change_request=cr))


@require_POST
@staff_required(perms=AMEND)
def withdraw(request, change_request_id):
    return _run(request, change_request_id, "withdrawn", lambda actor, cr: approvals.change_request_withdraw(
        actor=actor, change_request=cr, reason=request.POST.get("reason", "").strip()))


@require_POST
@staff_required(perms=AMEND)
def rebase(request, change_request_id):
    return _run(request, change_request_id, "rebased",
                lambda actor, cr: approvals.change_request_rebase(actor=actor, change_request=cr))


def _payload(post, operation):
    if operation == Operation.RESTORE:
        return {"reason": post.get("reason", "").strip()}
    if operation == Operation.ROLLOUT:
        raw = post.get("percentage", "").strip()
        return {"percentage": int(raw) if raw.isdigit() else raw}
    if operation == Operation.UPDATE:
        raw = post.get("rules", "").strip() or "[]"
        try:
            return {"rules": json.loads(raw)}
        except ValueError:
            return {"rules": raw}  # the service's field error says it is not a list
    return {}


@require_POST
@staff_required(perms=PROPOSE)
def propose(request, key):
    flag = _flag_or_404(key)
    operation = request.POST.get("action", "")
    try:
        cr = approvals.change_request_open(
            actor=Actor.from_request(request), flag=flag, environment=request.POST.get("environment", ""),
            title=request.POST.get("title", "").strip(), description=request.POST.get("description", ""),
            operation=operation, payload=_payload(request.POST, operation))
    except ServiceError as exc:
        messages.error(request, f"Not proposed: {exc}")
        return redirect(reverse("page-flag", args=[flag.key]) + "#change-requests-title")
    messages.success(request, f"Change request #{cr.pk} opened: it needs {approvals.required_approvals(cr)} "
                              "approval(s) from someone else before it can be applied.")
    return redirect(reverse("page-change-request", args=[cr.pk]))
