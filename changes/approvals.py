"""Change requests (four eyes) for protected environments: every write to protections, change
requests and reviews, and applying one.

A change request proposes one flag change in one environment: an operation and its payload as a
scheduled change holds them (changes/services.py OPERATIONS), validated at opening by running that
very flag service in a transaction that is rolled back (a dry run), which also yields the diff
against the state at ``base_version``.

- open / amend / rebase / withdraw: the author (amend and rebase start a new revision: earlier
  approvals no longer count; rebase = amend onto the flag's current version, same change). A
  project admin (changes.close_changerequest) may also withdraw someone else's stale request: the
  audit entry's actor is the admin, and its ``withdrawnBy`` and the request's result name them.
- review: approve, request changes or reject; by an approver (projects.policy.may_approve, and the
  review permission), never the author, never a command line without a user.
- apply: enough approvals of the current revision (the protected environment's required_approvals,
  the highest of every protected environment the change touches). The flag service runs, as the
  applier, inside ``flags.protection.applying`` and in one transaction with the
  change_request.applied audit entry that names the author and the approvers. A flag whose state
  moved past ``base_version`` is a conflict (409; the request is marked conflict and the author
  rebases). Two appliers at once apply it once: the row is locked (SELECT ... FOR UPDATE on
  PostgreSQL) and claimed by a status compare-and-set (every database).
"""

from types import SimpleNamespace

from django.db import transaction
from django.utils import timezone

from audit.actor import Actor
from audit.services import audit_record
from changes.models import ChangeRequest, Operation, ProtectedEnvironment, Review, ScheduledChange
from changes.selectors import OPEN_STATES
from changes.services import _check_payload, _run, change_data, check_run_at, zone
from flags import protection
from flags.errors import Conflict, Forbidden, NotFound, ServiceError, ValidationFailed
from flags.models import Environment, Flag, FlagState
from flags.selectors import environment_get, flag_get, flag_state_data
from flags.validation import add, check_text
from projects import policy

OPERATIONS = [op for op in Operation.values if op != Operation.KILL]  # a kill is never queued
SHOWN = ("enabled", "rules", "offVariant", "killed", "archived", "kind", "variants", "salt", "stickiness",
         "name", "description", "tags")


# -- protection -----------------------------------------------------------------------------------

def protection_data(protection):
    return {"environment": protection.environment.key, "protected": True,
            "requiredApprovals": protection.required_approvals}


def protection_get(environment):
    env = environment_get(environment)
    return ProtectedEnvironment.all_objects.filter(environment=env).select_related("environment").first()


def protection_set(*, actor, environment, required_approvals):
    """Protect an environment (or change its number of approvals). Project admins."""
    env = environment_get(environment)
    fields = {}
    if isinstance(required_approvals, bool) or not isinstance(required_approvals, int) \
            or not 1 <= required_approvals <= 10:
        add(fields, "requiredApprovals", "An integer from 1 to 10.")
    if fields:
        raise ValidationFailed(fields)
    exists = ProtectedEnvironment.all_objects.filter(environment=env).exists()
    policy.require(actor, f"changes.{'change' if exists else 'add'}_protectedenvironment", project=env.project_id)
    with transaction.atomic():
        protection = ProtectedEnvironment.all_objects.select_for_update().filter(environment=env).first()
        before = protection_data(protection) if protection else {"environment": env.key, "protected": False}
        if protection is None:
            protection = ProtectedEnvironment.all_objects.create(
                project_id=env.project_id, environment=env, required_approvals=required_approvals,
                updated_by=actor.label[:200])
        elif protection.required_approvals == required_approvals:
            return protection
        else:
            protection.required_approvals = required_approvals
            protection.updated_by = actor.label[:200]
            protection.save(update_fields=["required_approvals", "updated_by", "updated_at"])
        audit_record(actor=actor, action="environment.protected", target_type="environment", target_key=env.key,
                     environment=env.key, before=before, after=protection_data(protection))
    return protection


def protection_remove(*, actor, environment):
    """Unprotect an environment (audited; open change requests stay and can still be applied)."""
    env = environment_get(environment)
    policy.require(actor, "changes.delete_protectedenvironment", project=env.project_id)
    with transaction.atomic():
        protection = ProtectedEnvironment.all_objects.select_for_update().filter(environment=env).first()
        if protection is None:
            return None
        before = protection_data(protection)
        protection.delete()
        audit_record(actor=actor, action="environment.unprotected", target_type="environment", target_key=env.key,
                     environment=env.key, before=before, after={"environment": env.key, "protected": False})
    return None


# -- reading a state as a change request shows it -------------------------------------------------

def _view(data):
    return {k: data[k] for k in SHOWN if k in data}


def current_view(flag, env):
    state = FlagState.objects.select_related("flag", "environment").get(flag_id=flag.pk, environment=env)
    return _view(flag_state_data(state)), state.version


def diff_of(before, after):
    return {k: {"before": before.get(k), "after": after.get(k)}
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}


def proposed_view(change_request):
    """The state the request would leave (its base with the diff applied)."""
    return {**change_request.base, **{k: d["after"] for k, d in change_request.diff.items()}}


def touched_environments(operation, payload, env):
    """Environments whose served state the change moves: the flag's own evaluation fields and
    archiving serve every environment; the rest, this one."""
    if operation == Operation.ARCHIVE or (operation == Operation.UPDATE
                                          and set(payload) & set(protection.EVALUATION_FIELDS)):
        return list(Environment.objects.all())
    return [env]


def required_approvals(change_request):
    """The most any protected environment it touches asks for; at least one (a request is reviewed
    even where the environment is no longer protected)."""
    envs = touched_environments(change_request.operation, change_request.payload, change_request.environment)
    return max([1, *protection.protected(envs).values()])


# -- validating a proposal ------------------------------------------------------------------------

class _DryRun(Exception):
    pass


def _dry_run(*, actor, flag, env, operation, payload):
    """Run the change as applying would, roll it back; (base view, proposed view, base version).
    Its refusals as field errors under "change."; a change that changes nothing is refused."""
    outcome = {}
    applying = SimpleNamespace(pk=None, flag_id=flag.pk)
    try:
        with transaction.atomic():
            outcome["base"], outcome["version"] = current_view(flag, env)
            with protection.applying(applying):
                _run(operation, payload, actor=actor, flag=flag, environment=env)
            outcome["after"], _ = current_view(flag, env)
            raise _DryRun
    except _DryRun:
        pass
    except ValidationFailed as exc:
        raise ValidationFailed({f"change.{path}": messages for path, messages in exc.fields.items()},
                               message=exc.message) from None
    if outcome["base"] == outcome["after"]:
        raise ValidationFailed({"change": ["This changes nothing: the flag is already so."]})
    return outcome["base"], outcome["after"], outcome["version"]


def _check_proposal(fields, *, title, description, operation, payload):
    if title is not None:
        check_text(fields, "title", title, required=True, max_length=200)
    if description is not None:
        check_text(fields, "description", description, max_length=10_000)
    if operation == Operation.KILL:
        add(fields, "change.action", "The kill switch is never held for approval: use it directly, it applies "
                                     "at once (audited, notified).")
        return {}
    return _check_payload(fields, operation, payload)


def _flag_and_env(fields, flag, environment):
    found_flag = found_env = None
    try:
        found_flag = flag if isinstance(flag, Flag) else flag_get(flag)
    except ServiceError:
        add(fields, "flag", f"Unknown flag '{flag}'.")
    try:
        found_env = environment_get(environment)
    except ServiceError:
        add(fields, "environment", f"Unknown environment '{environment}'.")
    return found_flag, found_env


def change_request_data(cr, *, approvers=None):
    return {"id": cr.pk, "flag": cr.flag.key, "environment": cr.environment.key, "title": cr.title,
            "action": cr.operation, "change": cr.payload, "diff": cr.diff, "baseVersion": cr.base_version,
            "status": cr.status, "revision": cr.revision, "author": cr.author_label,
            **({"approvers": approvers} if approvers is not None else {})}


def _audit(actor, action, cr, *, before=None, reason="", approvers=None):
    audit_record(actor=actor, action=action, target_type="change_request", target_key=str(cr.pk),
                 environment=cr.environment.key, before=before,
                 after={**change_request_data(cr, approvers=approvers), "flagKey": cr.flag.key}, reason=reason)


# -- the author's actions -------------------------------------------------------------------------

def change_request_open(*, actor, flag, environment, title, operation, payload=None, description=""):
    """Propose a change. Needs what the direct write needs (the author's own rights, checked by the
    dry run) and changes.add_changerequest."""
    payload = {} if payload is None else payload
    fields = {}
    flag, env = _flag_and_env(fields, flag, environment)
    payload = _check_proposal(fields, title=title, description=description, operation=operation, payload=payload)
    if fields:
        raise ValidationFailed(fields)
    policy.require(actor, "changes.add_changerequest", environments=[env.key])
    base, after, version = _dry_run(actor=actor, flag=flag, env=env, operation=operation, payload=payload)
    with transaction.atomic():
        cr = ChangeRequest.objects.create(
            flag=flag, environment=env, title=title.strip(), description=description or "", operation=operation,
            payload=payload, base=base, diff=diff_of(base, after), base_version=version, author=actor.user,
            author_label=actor.label[:200])
        _audit(actor, "change_request.opened", cr)
    return cr


def _is_author(actor, cr):
    if cr.author_id is None:  # opened from the command line: the command line
        return actor.user is None and actor.api_key is None
    return getattr(actor.user, "pk", None) == cr.author_id


def is_author(actor, cr):
    """Did ``actor`` open ``cr`` (who may amend, rebase and withdraw it)?"""
    return _is_author(actor, cr)


def _locked(cr):
    locked = ChangeRequest.objects.select_for_update().select_related("flag", "environment").filter(pk=cr.pk).first()
    if locked is None:
        raise NotFound(f"Change request #{cr.pk} not found.")
    return locked


def _require_author(actor, cr, verb):
    if not _is_author(actor, cr):
        raise Forbidden(f"Only its author ({cr.author_label}) may {verb} change request #{cr.pk}.")


def _require_open(cr, verb, states=OPEN_STATES):
    if cr.status not in states:
        raise Conflict(f"Change request #{cr.pk} is {cr.status}: it can no longer be {verb}.",
                       fields={"status": [f"Is {cr.status}."]})


def change_request_amend(*, actor, change_request, title=None, description=None, operation=None, payload=None,
                         rebase=False):
    """The author changes the proposal (and/or its text); it is checked again against the flag's
    current state, becomes a new revision, and earlier approvals no longer count. ``rebase``: the
    same change onto the current version (after a conflict)."""
    policy.require(actor, "changes.change_changerequest", environments=[change_request.environment.key])
    cr = change_request
    _require_author(actor, cr, "rebase" if rebase else "amend")
    operation = cr.operation if operation is None else operation
    payload = cr.payload if payload is None else payload
    fields = {}
    payload = _check_proposal(fields, title=title, description=description, operation=operation, payload=payload)
    if fields:
        raise ValidationFailed(fields)
    _require_open(cr, "amended")
    base, after, version = _dry_run(actor=actor, flag=cr.flag, env=cr.environment, operation=operation,
                                    payload=payload)
    with transaction.atomic():
        cr = _locked(cr)
        _require_open(cr, "amended")
        before = change_request_data(cr)
        if title is not None:
            cr.title = title.strip()
        if description is not None:
            cr.description = description
        cr.operation, cr.payload, cr.base, cr.diff, cr.base_version = (operation, payload, base,
                                                                       diff_of(base, after), version)
        cr.revision += 1
        cr.status = ChangeRequest.State.OPEN
        cr.result = ""
        cr.save()
        _audit(actor, "change_request.rebased" if rebase else "change_request.amended", cr, before=before)
    return cr


def change_request_rebase(*, actor, change_request):
    return change_request_amend(actor=actor, change_request=change_request, rebase=True)


def may_withdraw(actor, cr):
    """The author, or a project admin closing someone else's request (no exception raised)."""
    if _is_author(actor, cr):
        return True
    try:
        policy.require(actor, "changes.close_changerequest", project=cr.project_id)
    except Forbidden:
        return False
    return True


def change_request_withdraw(*, actor, change_request, reason=""):
    """The author withdraws their request; a project admin may close anyone's (say why: it is
    recorded, with their name, in the result and the audit entry)."""
    cr = change_request
    fields = {}
    check_text(fields, "reason", reason, max_length=2000)
    if fields:
        raise ValidationFailed(fields)
    by_author = _is_author(actor, cr)
    if by_author:
        policy.require(actor, "changes.change_changerequest", environments=[cr.environment.key])
    elif not may_withdraw(actor, cr):
        raise Forbidden(f"Only its author ({cr.author_label}) or a project admin may withdraw change request "
                        f"#{cr.pk}.")
    with transaction.atomic():
        cr = _locked(cr)
        _require_open(cr, "withdrawn")
        before = change_request_data(cr)
        result = (reason or "") if by_author else \
            f"withdrawn by {actor.label} (project admin)" + (f": {reason}" if reason else "")
        cr.status, cr.result = ChangeRequest.State.WITHDRAWN, result[:10_000]
        cr.save(update_fields=["status", "result", "updated_at"])
        audit_record(actor=actor, action="change_request.withdrawn", target_type="change_request",
                     target_key=str(cr.pk), environment=cr.environment.key, before=before,
                     after={**change_request_data(cr), "flagKey": cr.flag.key, "withdrawnBy": actor.label,
                            "byAuthor": by_author},
                     reason=reason or ("" if by_author else f"closed by {actor.label}, not its author"))
    return cr


# -- reviews --------------------------------------------------------------------------------------

def verdicts(cr):
    """{reviewer label: verdict}: each reviewer's latest verdict on the current revision."""
    latest = {}
    for review in cr.reviews.filter(revision=cr.revision).order_by("id"):
        latest[review.reviewer_id] = review
    return latest


def approvers(cr):
    return sorted(r.reviewer_label for r in verdicts(cr).values() if r.verdict == Review.Verdict.APPROVE)


def change_request_review(*, actor, change_request, verdict, comment=""):
    """An approver approves, requests changes or rejects (the author never; a rejection ends it)."""
    fields = {}
    if verdict not in Review.Verdict.values:
        add(fields, "verdict", f"Must be one of: {', '.join(Review.Verdict.values)}.")
    check_text(fields, "comment", comment, max_length=10_000)
    if fields:
        raise ValidationFailed(fields)
    cr = change_request
    envs = touched_environments(cr.operation, cr.payload, cr.environment)
    policy.require(actor, "changes.review_changerequest", environments=[e.key for e in envs])
    user = actor.user
    if user is None or getattr(user, "pk", None) is None:
        raise Forbidden("A review is a person's: sign in (or use your own token) to review.")
    if _is_author(actor, cr):
        raise Forbidden(f"You opened change request #{cr.pk}: a second person must review it (four eyes).")
    if not policy.may_approve(user, cr.project_id, [e.key for e in envs]):
        raise Forbidden(f"Reviewing needs the approver role in {', '.join(e.key for e in envs)}.")
    with transaction.atomic():
        cr = _locked(cr)
        _require_open(cr, "reviewed", (ChangeRequest.State.OPEN, ChangeRequest.State.APPROVED))
        before = change_request_data(cr)
        Review.objects.create(change_request=cr, reviewer=user, reviewer_label=actor.label[:200], verdict=verdict,
                              comment=comment or "", revision=cr.revision)
        names = approvers(cr)
        if verdict == Review.Verdict.REJECT:
            cr.status, action = ChangeRequest.State.REJECTED, "change_request.rejected"
        else:
            enough = len(names) >= required_approvals(cr)
            cr.status = ChangeRequest.State.APPROVED if enough else ChangeRequest.State.OPEN
            action = ("change_request.approved" if verdict == Review.Verdict.APPROVE
                      else "change_request.changes_requested")
        cr.save(update_fields=["status", "updated_at"])
        _audit(actor, action, cr, before=before, reason=comment or "", approvers=names)
    return cr


# -- applying -------------------------------------------------------------------------------------

def change_request_apply(*, actor, change_request):
    """Apply an approved request once (see the module docstring). Conflict (409) when it lacks
    approvals, is not approved, was applied already, or the flag moved past its base version (then
    it is marked conflict: the author rebases)."""
    cr = change_request
    envs = touched_environments(cr.operation, cr.payload, cr.environment)
    policy.require(actor, "changes.apply_changerequest", environments=[e.key for e in envs])
    conflict = None
    with transaction.atomic():
        cr = _locked(cr)
        if cr.status == ChangeRequest.State.APPLIED:
            raise Conflict(f"Change request #{cr.pk} was applied already (by {cr.applied_by}).",
                           fields={"status": ["Is applied."]})
        _require_open(cr, "applied", (ChangeRequest.State.OPEN, ChangeRequest.State.APPROVED))
        names, needed = approvers(cr), required_approvals(cr)
        if len(names) < needed:
            raise Conflict(f"Change request #{cr.pk} has {len(names)} of the {needed} approval"
                           f"{'s' if needed != 1 else ''} it needs.", fields={"approvals": [f"{len(names)} of {needed}."]})
        _, version = current_view(cr.flag, cr.environment)
        if version != cr.base_version:
            conflict = (f"the flag changed since the request was opened (version {cr.base_version}, now {version}): "
                        "its author rebases it onto the current state, and it is reviewed again.")
            before = change_request_data(cr)
            cr.status, cr.result = ChangeRequest.State.CONFLICT, conflict
            cr.save(update_fields=["status", "result", "updated_at"])
            _audit(actor, "change_request.conflict", cr, before=before, reason=conflict)
        else:
            # the compare-and-set that makes it ours: a second applier finds it applied
            now = timezone.now()
            if not ChangeRequest.all_objects.filter(pk=cr.pk, revision=cr.revision, status__in=(
                    ChangeRequest.State.OPEN, ChangeRequest.State.APPROVED)).update(
                    status=ChangeRequest.State.APPLIED, applied_by=actor.label[:200], applied_at=now, updated_at=now):
                raise Conflict(f"Change request #{cr.pk} was applied already.", fields={"status": ["Is applied."]})
            label = (f"{actor.label} applying change request #{cr.pk} by {cr.author_label}, "
                     f"approved by {', '.join(names)}")
            applier = Actor(label=label[:200], user=actor.user, api_key=actor.api_key,
                            request_id=getattr(actor, "request_id", ""), ip=getattr(actor, "ip", None))
            before = change_request_data(cr)
            with protection.applying(cr):
                _run(cr.operation, cr.payload, actor=applier, flag=cr.flag, environment=cr.environment)
            cr.refresh_from_db()
            cr.result = "applied"
            cr.save(update_fields=["result"])
            audit_record(actor=actor, action="change_request.applied", target_type="change_request",
                         target_key=str(cr.pk), environment=cr.environment.key, before=before,
                         after={**change_request_data(cr, approvers=names), "flagKey": cr.flag.key,
                                "appliedBy": actor.label},
                         reason=f"opened by {cr.author_label}; approved by {', '.join(names)}")
    if conflict:
        raise Conflict(f"Change request #{cr.pk}: {conflict}", fields={"baseVersion": ["Stale: rebase."]})
    return cr


def change_request_schedule(*, actor, change_request, run_at, timezone="UTC"):
    """Apply an approved request at ``run_at`` instead of now: a scheduled change pointing at it,
    applied by the scheduler with change_request_apply (so its approvals, base version and
    once-only are checked when it fires; a conflict then fails it with the reason). Needs the
    rights to apply it (scheduling the apply) and to schedule."""
    cr = change_request
    fields = {}
    tz = zone(fields, "timezone", timezone)
    run_at = check_run_at(fields, run_at, tz)
    if fields:
        raise ValidationFailed(fields)
    policy.require(actor, "changes.apply_changerequest", environments=[cr.environment.key])
    policy.require(actor, "changes.add_scheduledchange", environments=[cr.environment.key])
    with transaction.atomic():
        cr = _locked(cr)
        names, needed = approvers(cr), required_approvals(cr)
        if cr.status != ChangeRequest.State.APPROVED or len(names) < needed:
            raise Conflict(f"Change request #{cr.pk} is {cr.status} with {len(names)} of {needed} approvals: only an "
                           "approved request can be scheduled.", fields={"status": [f"Is {cr.status}."]})
        if ScheduledChange.all_objects.filter(change_request=cr, status="pending").exists():
            raise Conflict(f"Change request #{cr.pk} is already scheduled: cancel or reschedule that one.")
        change = ScheduledChange.objects.create(
            flag=cr.flag, environment=cr.environment, operation=cr.operation, payload=cr.payload, run_at=run_at,
            timezone=timezone, author=actor.user, author_label=actor.label[:200], base_version=cr.base_version,
            change_request=cr)
        audit_record(actor=actor, action="schedule.created", target_type="flag", target_key=cr.flag.key,
                     environment=cr.environment.key, after=change_data(change))
    return change


# -- the conflict view (it runs the dry-run helpers above) ------------------------------------------

def three_way(cr):
    """base / current / proposed for every field the request or the flag's later changes touch."""
    current, version = current_view(cr.flag, cr.environment)
    proposed = proposed_view(cr)
    keys = sorted(k for k in SHOWN if len({repr(cr.base.get(k)), repr(current.get(k)), repr(proposed.get(k))}) > 1)
    return {"currentVersion": version, "rows": [
        {"field": k, "base": cr.base.get(k), "current": current.get(k), "proposed": proposed.get(k)} for k in keys]}
