"""The four-eyes rule, in one place: a change to a flag's state in a protected environment
(changes.ProtectedEnvironment) is refused with ApprovalRequired (409 "approval_required") unless it
is made by applying an approved change request (changes/approvals.py enters ``applying``).

Every flag service that changes what a protected environment serves calls ``require_approval``
(flags/services.py), so REST, the dashboard, the admin and its bulk actions, commands, scheduled
changes and anything written later reach it; none of them decides on its own. What it guards:
toggle, state (enabled, rules, off variant), the flag's evaluation fields (kind, variants, salt,
stickiness: they serve every environment), restore, archive, unarchive, delete, and a new flag's
non-default state. Segments too (``require_segment_approval``, called by segments/services.py): a
segment is shared by the project's flags, so changing the conditions of, or deleting, a segment
that some flag's rules in a protected environment reference (directly or through other segments)
changes what that environment serves and is refused the same way. What it never guards: the kill switch (it only turns things off and must never
wait for a second person; it is audited and notifies as always), and descriptive fields (name,
description, tags), which change no evaluation (a segment's name and description included).

The changes app owns the model; it is looked up by name so the arrows keep pointing from changes
to flags (without the app installed nothing is protected).
"""

import contextvars
from contextlib import contextmanager

from django.apps import apps

from flags.errors import ApprovalRequired
from projects import scope
from projects.models import DEFAULT

EVALUATION_FIELDS = ("kind", "variants", "salt", "stickiness")  # flag fields that change what is served

_applying = contextvars.ContextVar("flagsite_applying_change_request", default=None)


@contextmanager
def applying(change_request):
    """The flag writes inside this block carry out ``change_request`` (approved, locked by the
    caller): they pass the check for its flag only."""
    token = _applying.set((change_request.pk, change_request.flag_id))
    try:
        yield
    finally:
        _applying.reset(token)


def applying_now():
    """The id of the change request being applied in this context, or None."""
    current = _applying.get()
    return current[0] if current else None


def _model():
    try:
        return apps.get_model("changes", "ProtectedEnvironment")
    except LookupError:
        return None


def protected(environments):
    """{environment key: required approvals} for the protected ones among ``environments``
    (Environment objects)."""
    model = _model()
    pks = [env.pk for env in environments if env is not None]
    if model is None or not pks:
        return {}
    return dict(model.all_objects.filter(environment_id__in=pks)
                .values_list("environment__key", "required_approvals"))


def route():
    project = scope.current()
    return "/api/change-requests" if project == DEFAULT else f"/api/projects/{project}/change-requests"


def require_approval(flag, environments, what):
    """Raise ApprovalRequired when any of ``environments`` is protected, unless this context is
    applying a change request for ``flag`` (a Flag, or None for a flag being created)."""
    current = _applying.get()
    if current is not None and flag is not None and current[1] == getattr(flag, "pk", None):
        return
    found = protected(list(environments))
    if not found:
        return
    key = getattr(flag, "key", flag) or "this flag"
    where = ", ".join(sorted(found))
    needed = max(found.values())
    raise ApprovalRequired(
        f"'{key}': {what} in {where} needs an approved change request ({where} "
        f"{'is' if len(found) == 1 else 'are'} protected, {needed} approval{'s' if needed != 1 else ''}): "
        f"propose it with POST {route()} or on the dashboard (Change requests). "
        "The kill switch is never held back.",
        fields={"environment": [f"Protected: {where}."]}, route=route())


def segment_users(segment_key, segments):
    """{protected environment key: sorted flag keys} whose rules there use ``segment_key``, directly
    or through other segments (``segments``: {segment key: rule list} of the current project)."""
    from feature_flag_client.engine import segment_refs

    from flags.models import FlagState

    model = _model()
    if model is None:
        return {}
    # every segment whose meaning depends on segment_key (itself included): walk the "uses" edges backwards
    affected, frontier = {segment_key}, [segment_key]
    while frontier:
        key = frontier.pop()
        for other, rules in segments.items():
            if other not in affected and key in segment_refs(rules):
                affected.add(other)
                frontier.append(other)
    envs = model.all_objects.filter(project_id=scope.current()).values_list("environment_id", flat=True)
    found = {}
    states = (FlagState.objects.filter(environment_id__in=list(envs), flag__project_id=scope.current())
              .exclude(rules=[]).select_related("flag", "environment"))
    for state in states:
        if affected & segment_refs(state.rules):
            found.setdefault(state.environment.key, set()).add(state.flag.key)
    return {env: sorted(keys) for env, keys in found.items()}


def require_segment_approval(segment_key, segments, what):
    """Raise ApprovalRequired when a flag's rules in a protected environment use ``segment_key``
    (see segment_users): the segment would change what that environment serves. The way through:
    change requests that stop using it in those environments, or an admin unprotecting the
    environment (audited, notified)."""
    found = segment_users(segment_key, segments)
    if not found:
        return
    where = ", ".join(sorted(found))
    users = ", ".join(f"{flag} in {env}" for env, flags in sorted(found.items()) for flag in flags)
    raise ApprovalRequired(
        f"Segment '{segment_key}': {what} would change what protected {where} serve"
        f"{'s' if len(found) == 1 else ''} (used by {users}): it needs an approved change request. Propose "
        f"change requests that stop using it there (POST {route()}), change it, then use it again; or ask a "
        "project admin to unprotect the environment (audited).",
        fields={"conditions": [f"Used in protected {where} by {users}."]}, route=route())
