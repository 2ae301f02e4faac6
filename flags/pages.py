"""Dashboard pages (server-rendered; for staff and project members: projects.policy.may_use_dashboard):
the flags x environments overview with live status, flag detail, and the audit log, each of the
session's current project only (projects/scope.SessionProjectMiddleware). Every action is a POST
form (CSRF) calling a service.

Each page and action needs the same model permission as its REST call (flags/apis.py, audit/apis.py):
reading flags `flags.view_flag`, the audit log `audit.view_auditentry`, toggle / kill / restore
`flags.change_flag` (a member: their role in the current project grants them). Staff status or a
role alone only lets a user in; a missing permission is a 403 before anything is read or written."""

import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_POST

from analytics import selectors as analytics_selectors
from audit import display as audit_display
from audit.actor import Actor
from audit.models import AuditEntry
from flags import selectors, services
from flags.errors import ServiceError, ValidationFailed
from flags.models import Flag, FlagState
from flags.rule_text import describe, variant_split
from projects import policy, scope

AUDIT_GROUPS_PER_PAGE = 50  # groups of entries (one action each), not entries


VIEW_FLAGS = ("flags.view_flag",)
CHANGE_FLAGS = ("flags.change_flag",)  # what REST's toggle, kill-switch, restore and unarchive require
DELETE_FLAGS = ("flags.delete_flag",)  # REST archives with DELETE /api/flags/<key>
SHOW = {"": "Active flags", "only": "Archived flags", "all": "All flags"}  # the overview's "archived" filter


def staff_required(view=None, *, perms=VIEW_FLAGS):
    """Login required; logged-in users who may not use the dashboard (neither staff nor a member of
    some project: projects.policy.may_use_dashboard), or lack `perms` in the current project, get a
    403. Bare @staff_required means "may view flags" (the analytics page)."""
    if view is None:
        return lambda view: staff_required(view, perms=perms)

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not policy.may_use_dashboard(request.user):
            raise PermissionDenied("The dashboard is for staff users and project members.")
        if not request.user.has_perms(perms):
            raise PermissionDenied(f"This needs the permission {', '.join(perms)}.")
        return view(request, *args, **kwargs)

    return wrapper


def _flag_or_404(key):
    flag = Flag.objects.filter(key=key).first()
    if flag is None:
        raise Http404(f"No flag '{key}'.")
    return flag


def _status(state):
    return "killed" if state.killed else ("on" if state.enabled else "off")


@staff_required
def overview(request):
    environments = selectors.environment_list()
    search = request.GET.get("q", "").strip()[:200]
    tag = request.GET.get("tag", "").strip()[:100]
    show = request.GET.get("archived", "")
    show = show if show in SHOW else ""
    listed = {"": Flag.objects.filter(archived=False), "only": Flag.objects.filter(archived=True),
              "all": Flag.objects.all()}[show]  # archived flags are hidden unless asked for
    flags = listed.order_by("key")
    if search:
        keys = set(selectors.flag_state_list(environment=environments[0], search=search, include_archived=bool(show))
                   .values_list("flag__key", flat=True)) if environments else set()
        flags = flags.filter(key__in=keys)
    all_tags = sorted({t for tags in listed.values_list("tags", flat=True) for t in tags or []})
    flags = [f for f in flags if not tag or tag in (f.tags or [])]
    states = {(s.flag_id, s.environment_id): s for s in FlagState.objects.filter(flag__in=flags).select_related("environment")}
    stale = analytics_selectors.stale_flag_keys()
    rows = []
    for flag in flags:
        cells = []
        for env in environments:
            state = states.get((flag.pk, env.pk))
            if state is not None:
                cells.append({"env": env, "state": state, "status": _status(state)})
        rows.append({"flag": flag, "cells": cells, "stale": flag.key in stale})
    return render(request, "flags/overview.html", {
        "environments": environments, "rows": rows, "search": search, "tag": tag, "all_tags": all_tags,
        "show": show, "show_choices": list(SHOW.items()),
        "ws_environments": [env.key for env in environments],
        "next": request.get_full_path(),
    })


@staff_required
def flag_detail(request, key):
    if key == "new" and not Flag.objects.filter(key=key).exists():
        return redirect(reverse("page-flag-new"))  # /flags/new without its slash
    flag = _flag_or_404(key)
    time_range = request.GET.get("range", "24h")
    if time_range not in analytics_selectors.TIME_RANGES:
        time_range = "24h"
    states = list(FlagState.objects.filter(flag=flag).select_related("environment").order_by("environment__sort_order"))
    env_rows = [{"state": s, "status": _status(s), "sentence": describe(s.rules, s.enabled, s.killed, flag.variants)}
                for s in states]
    variants = [{"key": v.get("key"), "weight": v.get("weight"), "share": share,
                 "value": json.dumps(v.get("value"), ensure_ascii=False)} for v, share in variant_split(flag.variants)]
    series = analytics_selectors.flag_series(flag_key=flag.key, time_range=time_range)
    entries = []
    if request.user.has_perm("audit.view_auditentry"):  # as /api/audit/flag/<key>
        entries = AuditEntry.objects.filter(project=scope.current(), target_type="flag",
                                            target_key=flag.key).order_by("-id")[:20]
        entries = [audit_display.present(group) for group in audit_display.group(entries)]
    activity = analytics_selectors.flag_activity(flag.key)
    from changes.approval_pages import flag_panel
    from changes.pages import timeline  # both build on this module's decorators
    from flags.editor import page_data

    return render(request, "flags/detail.html", {
        "editor": page_data(request.user, flag, states),
        "flag": flag, "env_rows": env_rows, "variants": variants, "series": series, "time_range": time_range,
        "time_ranges": list(analytics_selectors.TIME_RANGES), "audit": entries,
        "stale": bool(activity and activity.stale), "activity": activity,
        "next": request.get_full_path(), "schedule": timeline(flag), "requests": flag_panel(flag),
    })


def _next(request, fallback):
    target = request.POST.get("next") or fallback
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = fallback
    return redirect(target)


def _action(request, key, run, success):
    flag = _flag_or_404(key)
    environment = request.POST.get("environment", "")
    try:
        run(flag, environment, Actor.from_request(request))
    except ServiceError as exc:
        messages.error(request, f"{flag.key} in {environment or 'all environments'}: {exc}")
    else:
        messages.success(request, success.format(flag=flag.key, env=environment))
    return _next(request, reverse("page-overview"))


def set_enabled(*, actor, flag, environment, enabled, seen_version=None):
    """Turn a flag on or off as the operator saw it (a page's or the admin's button): a state
    already `enabled`, or no longer at `seen_version`, is a Conflict and nothing is written."""
    if not isinstance(enabled, bool):
        raise ValidationFailed({"enabled": ["Must be true or false: reload the page."]})
    return services.flag_toggle(actor=actor, flag=flag, environment=environment, enabled=enabled,
                                expected_version=seen_version, unchanged_is_conflict=True)


@require_POST
@staff_required(perms=CHANGE_FLAGS)
def flag_toggle(request, key):
    """Sets the state the button showed ("Turn on" posts enabled=true) at the version the page saw."""

    def run(flag, environment, actor):
        enabled = {"true": True, "false": False}.get(request.POST.get("enabled", ""), "")
        set_enabled(actor=actor, flag=flag, environment=environment, enabled=enabled,
                    seen_version=request.POST.get("version") or None)

    state = "on" if request.POST.get("enabled") == "true" else "off"
    return _action(request, key, run, "{flag} turned " + state + " in {env}.")


@require_POST
@staff_required(perms=CHANGE_FLAGS)
def flag_kill(request, key):
    def run(flag, environment, actor):
        services.flag_kill(actor=actor, flag=flag, reason=request.POST.get("reason", "").strip(),
                           environments=[environment] if environment else None)

    return _action(request, key, run, "{flag} killed in {env}.")


def restore_reason(raw):
    """The optional reason a restore records (the same limit as REST's and the kill reason)."""
    reason = (raw or "").strip()
    if len(reason) > 2000:
        raise ValidationFailed({"reason": ["At most 2000 characters."]})
    return reason


@require_POST
@staff_required(perms=CHANGE_FLAGS)
def flag_restore(request, key):
    def run(flag, environment, actor):
        services.flag_restore(actor=actor, flag=flag, reason=restore_reason(request.POST.get("reason")),
                              environments=[environment] if environment else None)

    return _action(request, key, run, "{flag} restored in {env}.")


@staff_required(perms=DELETE_FLAGS)
def flag_archive(request, key):
    """GET: what archiving does, and a button to confirm. POST confirm=yes: archive (services.flag_archive,
    refused while another flag requires this one); any other POST shows the confirmation again."""
    flag = _flag_or_404(key)
    if request.method == "POST" and request.POST.get("confirm") == "yes" and flag.archived:
        messages.info(request, f"{flag.key} was already archived: nothing changed.")
        return redirect(reverse("page-flag", args=[flag.key]))
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            services.flag_archive(actor=Actor.from_request(request), flag=flag)
        except ServiceError as exc:
            messages.error(request, f"{flag.key}: {exc}")
            return redirect(reverse("page-flag", args=[flag.key]))
        messages.success(request, f"Archived {flag.key}: SDKs no longer get it. It is listed under "
                                  "“Archived flags”, from where its page can unarchive it.")
        return redirect(reverse("page-overview"))
    return render(request, "flags/archive_confirm.html", {
        "flag": flag, "required_by": selectors.flags_referencing(flag_key=flag.key, exclude=flag.key),
    })


@require_POST
@staff_required(perms=CHANGE_FLAGS)
def flag_unarchive(request, key):
    flag = _flag_or_404(key)
    try:
        services.flag_unarchive(actor=Actor.from_request(request), flag=flag)
    except ServiceError as exc:
        messages.error(request, f"{flag.key}: {exc}")
    else:
        messages.success(request, f"Unarchived {flag.key}: listed and evaluated again, with the states it had.")
    return _next(request, reverse("page-flag", args=[flag.key]))


@staff_required(perms=("audit.view_auditentry",))
def audit_log(request):
    project_entries = AuditEntry.objects.filter(project=scope.current())  # the current project's only
    entries = project_entries.order_by("-id")
    filters = {name: request.GET.get(name, "").strip()[:200] for name in ("action", "target", "environment", "actor")}
    if filters["action"]:
        entries = entries.filter(action=filters["action"])
    if filters["target"]:
        entries = entries.filter(target_key__icontains=filters["target"])
    if filters["environment"]:
        entries = entries.filter(environment=filters["environment"])
    if filters["actor"]:
        entries = entries.filter(actor__icontains=filters["actor"])
    page, rows = audit_display.page_of_groups(entries, request.GET.get("page"), AUDIT_GROUPS_PER_PAGE)
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(request, "audit/log.html", {
        "page": page, "rows": rows, "filters": filters, "query": query,
        "actions": list(project_entries.order_by("action").values_list("action", flat=True).distinct()),
        "environments": selectors.environment_list(),
    })
