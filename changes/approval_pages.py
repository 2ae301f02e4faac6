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
from changes import approvals, selectors
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
    return {"pending": selectors.pending_for_flag(flag), "actions": PROPOSE_ACTIONS,
            "protected": {p.environment.key: p.required_approvals
                          for p in ProtectedEnvironment.objects.select_related("environment")}}


def _request_or_404(change_request_id):
    from django.http import Http404

    try:
        return selectors.change_request_get(change_request_id)
    except NotFound as exc:
        raise Http404(str(exc)) from None


@staff_required(perms=VIEW)
def pending(request):
    rows = [{"cr": cr, "approvals": approvals.approvers(cr), "needed": approvals.required_approvals(cr)}
            for cr in selectors.change_request_list(status="pending")]
    recent = selectors.change_request_list().exclude(status__in=selectors.OPEN_STATES)[:20]
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
        "is_author": cr.author_id == user.pk, "is_open": cr.status in selectors.OPEN_STATES,
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


def _payload(post, operation, keep=None):
    """The change a form posts. ``keep``: for "update", the fields an amended request proposed that
    the form does not show (REST may propose more), kept unless the form sets them."""
    if operation == Operation.RESTORE:
        return {"reason": post.get("reason", "").strip()}
    if operation == Operation.ROLLOUT:
        raw = post.get("percentage", "").strip()
        return {"percentage": int(raw) if raw.isdigit() else raw}
    if operation == Operation.UPDATE:
        payload = {k: v for k, v in (keep or {}).items() if k not in ("rules", "enabled")}
        raw = post.get("rules", "").strip() or "[]"
        try:
            payload["rules"] = json.loads(raw)
        except ValueError:
            payload["rules"] = raw  # the service's field error says it is not a list
        if post.get("enabled") in ("true", "false"):
            payload["enabled"] = post["enabled"] == "true"
        return payload
    return {}


def _errors(exc):
    """A service error as {form field: [messages]} and the messages for no field."""
    fields, general = {}, []
    for path, found in exc.fields.items():
        name = path.removeprefix("change.").split(".")[0].split("[")[0] or "change"
        fields.setdefault(name, []).extend(found if path in (name, f"change.{name}") else
                                           [f"{path.removeprefix('change.')}: {m}" for m in found])
    if not exc.fields:
        general.append(exc.message)
    return fields, general


def _form(request, *, heading, values, environments, cr=None, flag=None, errors=None, general=None, status=200):
    return render(request, "changes/proposal.html", {
        "heading": heading, "values": values, "environments": environments, "cr": cr, "flag": flag,
        "actions": PROPOSE_ACTIONS, "errors": errors or {}, "general": general or [],
        "failed": bool(errors or general)}, status=status)


def _values(post):
    return {name: post.get(name, "") for name in ("environment", "action", "title", "description", "rules",
                                                  "enabled", "percentage", "reason")}


def _open(request, flag):
    """The posted proposal opened through the service (ServiceError when refused)."""
    operation = request.POST.get("action", "")
    return approvals.change_request_open(
        actor=Actor.from_request(request), flag=flag, environment=request.POST.get("environment", ""),
        title=request.POST.get("title", "").strip(), description=request.POST.get("description", ""),
        operation=operation, payload=_payload(request.POST, operation))


def _opened(request, cr):
    messages.success(request, f"Change request #{cr.pk} opened: it needs {approvals.required_approvals(cr)} "
                              "approval(s) from someone else before it can be applied.")
    return redirect(reverse("page-change-request", args=[cr.pk]))


@staff_required(perms=PROPOSE)
def propose_change(request, key):
    """A rules change (or any other) proposed on its own page: the rules as JSON, prefilled with
    the environment's current rules, for a protected environment where the editor cannot save."""
    from flags.models import Environment, FlagState

    flag = _flag_or_404(key)
    environments = list(Environment.objects.all())
    if request.method != "POST":
        protected = set(ProtectedEnvironment.objects.values_list("environment__key", flat=True))
        env = request.GET.get("environment") or next((e.key for e in environments if e.key in protected),
                                                     environments[0].key if environments else "")
        state = FlagState.objects.filter(flag=flag, environment__key=env).first()
        values = {"environment": env, "action": Operation.UPDATE, "title": "", "description": "",
                  "rules": json.dumps(state.rules if state else [], indent=2, ensure_ascii=False), "enabled": ""}
        return _form(request, heading=f"Propose a change to {flag.key}", values=values, environments=environments,
                     flag=flag)
    try:
        cr = _open(request, flag)
    except ServiceError as exc:
        errors, general = _errors(exc)
        return _form(request, heading=f"Propose a change to {flag.key}", values=_values(request.POST),
                     environments=environments, flag=flag, errors=errors, general=general,
                     status=403 if exc.code == "permission_denied" else 400)
    return _opened(request, cr)


@staff_required(perms=AMEND)
def amend(request, change_request_id):
    """The author edits the proposal (title, why, the change): a new revision, approvals reset."""
    cr = _request_or_404(change_request_id)
    heading = f"Amend #{cr.pk} {cr.title}"
    if request.method != "POST":
        if not approvals.is_author(Actor.from_request(request), cr):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied(f"Only its author ({cr.author_label}) amends change request #{cr.pk}.")
        payload = cr.payload
        values = {"environment": cr.environment.key, "action": cr.operation, "title": cr.title,
                  "description": cr.description,
                  "rules": json.dumps(payload.get("rules", approvals.proposed_view(cr).get("rules", [])), indent=2,
                                      ensure_ascii=False),
                  "enabled": {True: "true", False: "false"}.get(payload.get("enabled"), ""),
                  "percentage": payload.get("percentage", ""), "reason": payload.get("reason", "")}
        return _form(request, heading=heading, values=values, environments=[cr.environment], cr=cr)
    operation = request.POST.get("action", "") or cr.operation
    keep = cr.payload if operation == cr.operation else None
    try:
        cr = approvals.change_request_amend(
            actor=Actor.from_request(request), change_request=cr, title=request.POST.get("title", ""),
            description=request.POST.get("description", ""), operation=operation,
            payload=_payload(request.POST, operation, keep))
    except ServiceError as exc:
        errors, general = _errors(exc)
        return _form(request, heading=heading, values={**_values(request.POST), "environment": cr.environment.key},
                     environments=[cr.environment], cr=cr, errors=errors, general=general,
                     status=403 if exc.code == "permission_denied" else 400)
    messages.success(request, f"Change request #{cr.pk} amended: revision {cr.revision}, reviewed again "
                              "(earlier approvals no longer count).")
    return redirect(reverse("page-change-request", args=[cr.pk]))


@require_POST
@staff_required(perms=PROPOSE)
def propose(request, key):
    flag = _flag_or_404(key)
    try:
        cr = _open(request, flag)
    except ServiceError as exc:
        messages.error(request, f"Not proposed: {exc}")
        return redirect(reverse("page-flag", args=[flag.key]) + "#change-requests-title")
    return _opened(request, cr)
