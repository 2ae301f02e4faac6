"""Every write to scheduled changes and rollout plans, and the applier.

A scheduled change is one flag service call (OPERATIONS) kept for later. It is validated at
creation by running that very call in a transaction that is rolled back (a dry run): whatever the
direct write would refuse now, scheduling refuses, with the same field paths under "change.".

Applying (apply_due, run by the Celery beat task and the embedded runner): each due change is
claimed in its own transaction: PostgreSQL locks the row (SELECT ... FOR UPDATE SKIP LOCKED, so
concurrent appliers take different rows and never wait on each other), and a status
compare-and-set (UPDATE ... WHERE status='pending') claims it on every database (SQLite
serializes write transactions: BEGIN IMMEDIATE). The flag service runs in that same transaction,
with its audit entry, so a change is applied exactly once or not at all.

The rule after a downtime (README "Scheduled changes"): a change applied more than
late_after() past its time is *late*. A late change is applied with "applied late by X" in its
audit entry's actor when the flag's state in that environment is still at the version it was
scheduled against; if the state changed meanwhile someone may have acted on the missed change, so
it is skipped (status skipped, the reason in result) rather than applied over their change. A
kill is applied late whatever changed (it only turns things off: delaying it further never
helps); a restore follows the rule (it turns a feature back on: a human decides after a change).
A change applied on time applies whatever happened since it was scheduled, as the author asked.
"""

import datetime as dt
import itertools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.dateparse import parse_datetime, parse_time

from audit.actor import Actor
from audit.services import audit_record
from changes import clock
from changes.models import Operation, RolloutPlan, ScheduledChange, Status
from flags import services as flag_services
from flags.errors import Conflict, ServiceError, ValidationFailed
from flags.models import Flag, FlagState
from flags.selectors import environment_get, flag_get
from projects import policy, scope

SCHEDULER = Actor.system("scheduler")
PAYLOAD_FIELDS = {
    Operation.ENABLE: set(), Operation.DISABLE: set(), Operation.ARCHIVE: set(),
    Operation.KILL: {"reason"}, Operation.RESTORE: {"reason"}, Operation.ROLLOUT: {"percentage"},
    Operation.UPDATE: set(flag_services.FLAG_FIELDS) | set(flag_services.STATE_FIELDS),
}
DAYS = {"weekdays": range(5), "daily": range(7)}
MAX_STEPS = 20
MAX_START_DAYS = 366


def interval_seconds():
    return float(settings.FLAGS_SCHEDULED_CHANGES_INTERVAL)


def late_after():
    """Past its time by more than this, a change missed at least one applier run: it is late."""
    return dt.timedelta(seconds=2 * interval_seconds())


# -- the operations: one flag service call each ---------------------------------------------------

def with_percentage(rules, percentage):
    """`rules` with the top-level percentage rule at `percentage` (kept in place with its field), or
    one added: the other rules still narrow who is in the rollout."""
    rules = [dict(rule) for rule in rules or []]
    for rule in rules:
        if rule.get("type") == "percentage":
            rule.update(operator="less_than", value=percentage)
            return rules
    return rules + [{"type": "percentage", "operator": "less_than", "value": percentage}]


def _run(operation, payload, *, actor, flag, environment):
    if operation in (Operation.ENABLE, Operation.DISABLE):
        flag_services.flag_toggle(actor=actor, flag=flag, environment=environment,
                                  enabled=operation == Operation.ENABLE)
    elif operation == Operation.UPDATE:
        flag_services.flag_update(actor=actor, flag=flag, environment=environment, data=dict(payload))
    elif operation == Operation.ROLLOUT:
        state = FlagState.objects.get(flag=flag, environment=environment)
        flag_services.flag_update(actor=actor, flag=flag, environment=environment, data={
            "enabled": True, "rules": with_percentage(state.rules, payload["percentage"])})
    elif operation == Operation.KILL:
        flag_services.flag_kill(actor=actor, flag=flag, reason=payload["reason"], environments=[environment])
    elif operation == Operation.RESTORE:
        flag_services.flag_restore(actor=actor, flag=flag, reason=payload.get("reason", ""),
                                   environments=[environment])
    elif operation == Operation.ARCHIVE:
        flag_services.flag_archive(actor=actor, flag=flag)
    else:
        raise ValidationFailed({"change.action": [f"Unknown action '{operation}'."]})


class _DryRun(Exception):
    pass


def _dry_run(operation, payload, *, actor, flag, environment):
    """Run the operation as the direct write would and roll it back: its refusals, under "change."."""
    try:
        with transaction.atomic():
            _run(operation, payload, actor=actor, flag=flag, environment=environment)
            raise _DryRun
    except _DryRun:
        pass
    except ValidationFailed as exc:
        raise ValidationFailed({f"change.{path}": messages for path, messages in exc.fields.items()},
                               message=exc.message) from None


def _check_payload(fields, operation, payload):
    if operation not in Operation.values:
        fields.setdefault("change.action", []).append(f"Must be one of: {', '.join(Operation.values)}.")
        return {}
    if not isinstance(payload, dict):
        fields.setdefault("change", []).append("Expected an object.")
        return {}
    for name in sorted(set(payload) - PAYLOAD_FIELDS[operation]):
        fields.setdefault(f"change.{name}", []).append(f"Unknown field for action '{operation}'.")
    if operation == Operation.KILL and not (isinstance(payload.get("reason"), str) and payload["reason"].strip()):
        fields.setdefault("change.reason", []).append("Say why the flag is to be killed.")
    if operation == Operation.RESTORE and not isinstance(payload.get("reason", ""), str):
        fields.setdefault("change.reason", []).append("Expected a string.")
    if operation == Operation.ROLLOUT:
        percentage = payload.get("percentage")
        if isinstance(percentage, bool) or not isinstance(percentage, int) or not 0 <= percentage <= 100:
            fields.setdefault("change.percentage", []).append("An integer from 0 to 100.")
    if operation == Operation.UPDATE and not payload:
        fields.setdefault("change", []).append("Name at least one field to change.")
    return payload


def _check_author(actor, operation, environment):
    """Scheduling needs what the direct write needs (projects.policy); the operator's command line
    (no user, no key) may."""
    user = actor.user
    if user is None and actor.api_key is None:
        return
    if not policy.may_change_flag(user, operation, project=environment.project_id, environment=environment.key):
        raise PermissionDenied(f"Scheduling '{operation}' needs the permission the direct change needs.")


# -- times --------------------------------------------------------------------------------------

def zone(fields, name, value):
    try:
        return ZoneInfo(value) if isinstance(value, str) and value else None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    fields.setdefault(name, []).append("Unknown time zone: use an IANA name such as Europe/Berlin or UTC.")
    return None


def _parsed(parse, value):
    """parse(value), or None when it is not a string or not a valid date/time ("25:00" raises)."""
    try:
        return parse(value) if isinstance(value, str) else None
    except ValueError:
        return None


def check_run_at(fields, run_at, tz, *, name="runAt"):
    """An aware UTC datetime from a datetime or an ISO 8601 string (without an offset: in `tz`),
    in the future."""
    value = run_at if isinstance(run_at, dt.datetime) else _parsed(parse_datetime, run_at)
    if value is None:
        fields.setdefault(name, []).append("Expected an ISO 8601 date and time, e.g. 2026-12-07T09:00:00+01:00.")
        return None
    if value.tzinfo is None:
        if tz is None:
            return None  # the time zone's own error says why
        value = value.replace(tzinfo=tz)
    try:
        value = value.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00
        value = None
    if value is None or value.year > 9000:
        fields.setdefault(name, []).append("Too far in the future.")
        return None
    if value <= clock.now():
        fields.setdefault(name, []).append("Must be in the future.")
    return value


def _flag_and_env(fields, flag, environment):
    found_flag = found_env = None
    try:
        found_flag = flag if isinstance(flag, Flag) else flag_get(flag)
    except ServiceError:
        fields.setdefault("flag", []).append(f"Unknown flag '{flag}'.")
    try:
        found_env = environment_get(environment)
    except ServiceError:
        fields.setdefault("environment", []).append(f"Unknown environment '{environment}'.")
    return found_flag, found_env


def _state_version(flag, env):
    return FlagState.objects.filter(flag=flag, environment=env).values_list("version", flat=True).get()


def change_data(change):
    return {"id": change.pk, "flag": change.flag.key, "environment": change.environment.key,
            "action": change.operation, "change": change.payload, "runAt": change.run_at,
            "timezone": change.timezone, "status": change.status, "baseVersion": change.base_version,
            "plan": change.plan_id, "step": change.step,
            **({"changeRequest": change.change_request_id} if change.change_request_id else {})}


# -- scheduled changes ----------------------------------------------------------------------------

def scheduled_change_create(*, actor, flag, environment, operation, payload=None, run_at, timezone="UTC"):
    """Schedule one change of `flag` in `environment` for `run_at` (shown in `timezone`).
    Nothing is written unless the change would be accepted as a direct write now."""
    fields = {}
    payload = {} if payload is None else payload
    flag, env = _flag_and_env(fields, flag, environment)
    tz = zone(fields, "timezone", timezone)
    run_at = check_run_at(fields, run_at, tz)
    payload = _check_payload(fields, operation, payload)
    if fields:
        raise ValidationFailed(fields)
    _check_author(actor, operation, env)
    _dry_run(operation, payload, actor=actor, flag=flag, environment=env)
    with transaction.atomic():
        change = ScheduledChange.objects.create(
            flag=flag, environment=env, operation=operation, payload=payload, run_at=run_at, timezone=timezone,
            author=actor.user, author_label=actor.label[:200], base_version=_state_version(flag, env))
        audit_record(actor=actor, action="schedule.created", target_type="flag", target_key=flag.key,
                     environment=env.key, after=change_data(change))
    return change


def _locked_pending(change):
    locked = ScheduledChange.objects.select_for_update().filter(pk=change.pk).first()
    if locked is None or locked.status != Status.PENDING:
        status = locked.status if locked else "gone"
        raise Conflict(f"Scheduled change #{change.pk} is {status}: only a pending change can be changed.",
                       fields={"status": [f"Is {status}."]})
    return locked


def scheduled_change_cancel(*, actor, change, reason=""):
    with transaction.atomic():
        change = _locked_pending(change)
        before = change_data(change)
        change.status = Status.CANCELLED
        change.result = f"cancelled by {actor.label}" + (f": {reason}" if reason else "")
        change.save(update_fields=["status", "result", "updated_at"])
        audit_record(actor=actor, action="schedule.cancelled", target_type="flag", target_key=change.flag.key,
                     environment=change.environment.key, before=before, after=change_data(change), reason=reason)
    return change


def scheduled_change_reschedule(*, actor, change, run_at, timezone=None):
    """A new time (in the future). The author re-affirms the change against today's flag: its base
    version moves to the current one (a plan's step not reached yet keeps waiting for the one before)."""
    fields = {}
    tz = zone(fields, "timezone", timezone or change.timezone)
    run_at = check_run_at(fields, run_at, tz)
    if fields:
        raise ValidationFailed(fields)
    with transaction.atomic():
        change = _locked_pending(change)
        before = change_data(change)
        change.run_at, change.timezone = run_at, timezone or change.timezone
        if change.base_version is not None:
            change.base_version = _state_version(change.flag, change.environment)
        change.save(update_fields=["run_at", "timezone", "base_version", "updated_at"])
        audit_record(actor=actor, action="schedule.rescheduled", target_type="flag", target_key=change.flag.key,
                     environment=change.environment.key, before=before, after=change_data(change))
    return change


# -- rollout plans --------------------------------------------------------------------------------

def rollout_times(*, count, at, tz, days, start, after):
    """The next `count` local times `at` (a time) on `days` from the date `start` on, later than
    `after`, as UTC datetimes. Each day's offset is its own (DST); a time that does not exist that
    day (the spring-forward gap) runs at the same UTC instant as the offset before the change."""
    times, day = [], start
    while len(times) < count:
        if day.weekday() in DAYS[days]:
            moment = dt.datetime.combine(day, at, tzinfo=tz).astimezone(dt.UTC)
            if moment > after:
                times.append(moment)
        day += dt.timedelta(days=1)
    return times


def rollout_plan_create(*, actor, flag, environment, percentages, at, timezone="UTC", days="weekdays", start=None):
    """A stepped rollout: one ScheduledChange (action rollout) per percentage, on the next `days`
    at `at` local time from `start` (a date in `timezone`; default today there)."""
    fields = {}
    flag, env = _flag_and_env(fields, flag, environment)
    tz = zone(fields, "timezone", timezone)
    if not (isinstance(percentages, list) and 0 < len(percentages) <= MAX_STEPS
            and all(isinstance(p, int) and not isinstance(p, bool) and 0 < p <= 100 for p in percentages)
            and all(a < b for a, b in itertools.pairwise(percentages))):
        fields.setdefault("percentages", []).append(
            f"1 to {MAX_STEPS} increasing integers from 1 to 100, e.g. [10, 25, 50, 100].")
    at = _parsed(parse_time, at) if isinstance(at, str) else at
    if not isinstance(at, dt.time):
        fields.setdefault("at", []).append("A local time of day, e.g. 09:00.")
    if days not in DAYS:
        fields.setdefault("days", []).append(f"One of: {', '.join(DAYS)}.")
    if isinstance(start, str):
        try:
            start = dt.date.fromisoformat(start)
        except ValueError:
            fields.setdefault("start", []).append("A date, e.g. 2026-12-07.")
    today = clock.now().astimezone(tz).date() if tz else None
    if isinstance(start, dt.date) and today and start > today + dt.timedelta(days=MAX_START_DAYS):
        fields.setdefault("start", []).append(f"At most {MAX_START_DAYS} days from today.")
    if fields:
        raise ValidationFailed(fields)
    _check_author(actor, Operation.ROLLOUT, env)
    start = max(start or today, today)
    times = rollout_times(count=len(percentages), at=at, tz=tz, days=days, start=start, after=clock.now())
    _dry_run(Operation.ROLLOUT, {"percentage": percentages[0]}, actor=actor, flag=flag, environment=env)
    with transaction.atomic():
        plan = RolloutPlan.objects.create(flag=flag, environment=env, percentages=percentages, days=days, at=at,
                                          timezone=timezone, author=actor.user, author_label=actor.label[:200])
        base = _state_version(flag, env)
        for number, (percentage, run_at) in enumerate(zip(percentages, times), start=1):
            ScheduledChange.objects.create(
                flag=flag, environment=env, operation=Operation.ROLLOUT, payload={"percentage": percentage},
                run_at=run_at, timezone=timezone, author=actor.user, author_label=actor.label[:200],
                base_version=base if number == 1 else None, plan=plan, step=number)
        audit_record(actor=actor, action="rollout_plan.created", target_type="flag", target_key=flag.key,
                     environment=env.key, after=plan_data(plan))
    return plan


def plan_data(plan):
    return {"id": plan.pk, "flag": plan.flag.key, "environment": plan.environment.key,
            "percentages": plan.percentages, "days": plan.days, "at": plan.at.strftime("%H:%M"),
            "timezone": plan.timezone, "status": plan.status,
            "steps": [{"id": s.pk, "percentage": s.payload.get("percentage"), "runAt": s.run_at, "status": s.status}
                      for s in plan.steps.order_by("step")]}


def _stop_plan(plan, status, result):
    """The plan ends: its steps still pending are cancelled with `result`."""
    plan.status, plan.result = status, result
    plan.save(update_fields=["status", "result"])
    ScheduledChange.all_objects.filter(plan=plan, status=Status.PENDING).update(
        status=Status.CANCELLED, result=result, updated_at=clock.now())


def rollout_plan_cancel(*, actor, plan, reason=""):
    with transaction.atomic():
        plan = RolloutPlan.objects.select_for_update().get(pk=plan.pk)
        if plan.status != RolloutPlan.PlanStatus.ACTIVE:
            raise Conflict(f"Rollout plan #{plan.pk} is {plan.status}: only an active plan can be cancelled.",
                           fields={"status": [f"Is {plan.status}."]})
        before = plan_data(plan)
        _stop_plan(plan, RolloutPlan.PlanStatus.CANCELLED,
                   f"plan cancelled by {actor.label}" + (f": {reason}" if reason else ""))
        audit_record(actor=actor, action="rollout_plan.cancelled", target_type="flag", target_key=plan.flag.key,
                     environment=plan.environment.key, before=before, after=plan_data(plan), reason=reason)
    return plan


# -- applying -------------------------------------------------------------------------------------

def _duration(delta):
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n) or "<1m"


def apply_due(*, now=None, limit=1000):
    """Apply every change due at `now` (default: the clock), each exactly once. Returns
    [(id, status)] of the changes this call decided."""
    now = now or clock.now()
    decided, passed = [], set()
    while len(decided) + len(passed) < limit:
        outcome = _apply_next(now, passed)
        if outcome is None:
            break
        if outcome[1] is None:
            passed.add(outcome[0])  # taken by another applier between our read and our claim
        else:
            decided.append(outcome)
    return decided


def _apply_next(now, passed):
    with transaction.atomic():
        due = (ScheduledChange.all_objects.filter(status=Status.PENDING, run_at__lte=now, base_version__isnull=False)
               .exclude(pk__in=passed).order_by("run_at", "id"))
        change = due.select_for_update(skip_locked=True).first()
        if change is None:
            return None
        # the compare-and-set that makes it ours (on SQLite the only guard; on PostgreSQL the row lock is)
        if not ScheduledChange.all_objects.filter(pk=change.pk, status=Status.PENDING).update(
                status=Status.APPLIED, applied_at=now, updated_at=now):
            return change.pk, None
        with scope.using(change.project_id):
            status, result = _apply(change, now)
            change.status, change.result, change.applied_at = status, result, now
            change.save(update_fields=["status", "result", "applied_at", "updated_at"])
            if change.plan_id:
                _advance_plan(change)
        return change.pk, status


def _apply(change, now):
    flag, env = change.flag, change.environment
    delay = now - change.run_at
    late = delay > late_after()
    author = change.author
    refused = None
    if author is not None and not policy.may_change_flag(author, change.operation, project=env.project_id,
                                                              environment=env.key):
        refused = f"{change.author_label} may no longer make this change"
    else:
        version = _state_version(flag, env)
        if late and version != change.base_version and change.operation != Operation.KILL:
            refused = (f"missed by {_duration(delay)} and the flag changed meanwhile "
                       f"(version {change.base_version} when scheduled, now {version})")
    if refused:
        _record_outcome(change, "schedule.skipped", refused)
        return Status.SKIPPED, f"skipped: {refused}"
    label = f"scheduled change #{change.pk} by {change.author_label}"
    if late:
        label += f", applied late by {_duration(delay)}"
    actor = Actor(label=label[:200], user=author)
    try:
        if change.change_request_id:
            # the approved request, applied by its own rules (approvals, base version, once), in its own
            # savepoint: a conflict it records (the request marked conflict) stays with this outcome
            from changes.approvals import change_request_apply

            change_request_apply(actor=actor, change_request=change.change_request)
        else:
            with transaction.atomic():
                _run(change.operation, change.payload, actor=actor, flag=flag, environment=env)
    except ServiceError as exc:
        _record_outcome(change, "schedule.failed", str(exc))
        return Status.FAILED, f"failed: {exc}"
    return Status.APPLIED, "applied" + (f" late by {_duration(delay)}" if late else "")


def _record_outcome(change, action, reason):
    audit_record(actor=SCHEDULER, action=action, target_type="flag", target_key=change.flag.key,
                 environment=change.environment.key, after=change_data(change), reason=reason)


def _advance_plan(change):
    """After a step: the next one may run against the state this one left; a step skipped or failed
    halts the plan (the rest would build on a rollout that did not happen)."""
    plan = RolloutPlan.objects.select_for_update().get(pk=change.plan_id)
    if change.status != Status.APPLIED:
        _stop_plan(plan, RolloutPlan.PlanStatus.HALTED, f"plan halted: step {change.step} {change.result}")
        return
    following = ScheduledChange.all_objects.filter(plan=plan, step=change.step + 1, status=Status.PENDING)
    moved_on = following.update(base_version=_state_version(change.flag, change.environment))
    if not moved_on and not plan.steps.filter(status=Status.PENDING).exists():
        plan.status = RolloutPlan.PlanStatus.COMPLETED
        plan.save(update_fields=["status"])
