"""Every write to flags and API keys.

Each service validates first (ValidationFailed / Conflict / NotFound, nothing written), then in
one transaction makes the change, bumps the affected environments' versions and records the audit
entry; after commit it refreshes the cached snapshot and publishes the change.

Lock order, the same in every service so concurrent writers never deadlock: the flag row, then
its state rows, then environment rows in primary-key order, then the audit chain head.
"""

import hashlib
import secrets

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import audit_record
from flags import protection, publish
from flags.errors import Conflict, NotFound, ValidationFailed
from flags.models import ApiKey, Environment, Flag, FlagState
from flags.selectors import environment_get, flag_data, flag_state_data, flags_referencing
from flags.validation import (
    add, check_bool, check_key, check_kind_and_variants, check_off_variant, check_rules, check_tags,
    check_text,
)
from projects import policy, scope
from segments.selectors import segment_conditions_map

FLAG_FIELDS = ("name", "description", "tags", "kind", "variants", "salt", "stickiness")
STATE_FIELDS = ("enabled", "rules", "offVariant")
STATE_ATTRS = {"enabled": "enabled", "rules": "rules", "offVariant": "off_variant"}  # API name -> column


# -- helpers -------------------------------------------------------------------------------------

def _bump(environments):
    """+1 on each environment's version (in pk order); {env key: new version}."""
    versions = {}
    for env in sorted(environments, key=lambda e: e.pk):
        Environment.objects.filter(pk=env.pk).update(version=F("version") + 1)
        versions[scope.ref(env.project_id, env.key)] = Environment.objects.filter(pk=env.pk).values_list("version", flat=True).get()
    return versions


def _after_commit(versions, action, *, flag_key=None, segment_key=None):
    # publish.after_commit keeps Redis off the response (a hung one held a committed toggle 25 s)
    publish.on_commit(versions, action, flag_key=flag_key, segment_key=segment_key)


def prerequisite_map(exclude_key=None):
    """{flag key: rules of all its environments}: what the engine's validator needs to check that a
    prerequisite exists and closes no cycle. Archived flags are left out (they cannot be required)."""
    rules = {}
    states = FlagState.objects.select_related("flag").filter(flag__project_id=scope.current(), flag__archived=False)
    for state in states.order_by("pk"):
        if state.flag.key != exclude_key:
            rules.setdefault(state.flag.key, []).extend(state.rules or [])
    return rules


def _environments(environments):
    """Environment objects for keys/instances; None means all. Unknown keys -> ValidationFailed."""
    if environments is None:
        return list(Environment.objects.all())
    if isinstance(environments, (str, Environment)):
        environments = [environments]
    found, unknown = [], []
    for item in environments:
        env = item if isinstance(item, Environment) else Environment.objects.filter(key=item).first()
        (found if env is not None else unknown).append(env or item)
    if unknown:
        raise ValidationFailed({"environments": [f"Unknown environment '{key}'." for key in unknown]})
    if not found:
        raise ValidationFailed({"environments": ["Name at least one environment."]})
    return found


def _check_flag_fields(fields, data, *, kind, variants):
    if "name" in data:
        check_text(fields, "name", data["name"], required=True, max_length=200)
    if "description" in data:
        check_text(fields, "description", data["description"], max_length=10_000)
    if "tags" in data:
        check_tags(fields, data["tags"])
    if "kind" in data or "variants" in data:
        check_kind_and_variants(fields, kind, variants)
    for name in ("salt", "stickiness"):
        if name in data:
            check_text(fields, name, data[name], max_length=128)


def _locked_state(flag, env):
    locked_flag = Flag.objects.select_for_update().filter(pk=flag.pk).first()
    if locked_flag is None:
        raise NotFound(f"Flag '{flag.key}' not found.")
    state = (
        FlagState.objects.select_for_update(of=("self",))
        .select_related("environment")
        .get(flag_id=flag.pk, environment=env)
    )
    state.flag = locked_flag
    return state


# -- flags ---------------------------------------------------------------------------------------

def flag_create(*, actor, key, name, description="", tags=(), kind="boolean", variants=(), states=None,
                salt="", stickiness=""):
    """Create a flag with a state in every environment. `states`: {env key: {"enabled", "rules"}}
    (default: disabled, no rules). Error paths for states: "states.<env>.rules[0].operator".
    salt / stickiness: the engine's hashing inputs (blank: flag key / userId)."""
    fields = {}
    check_key(fields, key)
    tags = list(tags) if isinstance(tags, tuple) else tags
    variants = list(variants) if isinstance(variants, tuple) else variants
    _check_flag_fields(fields, {"name": name, "description": description, "tags": tags, "kind": kind,
                                "variants": variants, "salt": salt, "stickiness": stickiness},
                       kind=kind, variants=variants)
    envs = list(Environment.objects.all())
    env_by_key = {e.key: e for e in envs}
    states = states or {}
    if not isinstance(states, dict):
        add(fields, "states", "Must be an object keyed by environment.")
        states = {}
    segments = segment_conditions_map()
    flags = prerequisite_map(exclude_key=key)
    for env_key, state in states.items():
        path = f"states.{env_key}"
        if env_key not in env_by_key:
            add(fields, path, f"Unknown environment '{env_key}'.")
            continue
        if not isinstance(state, dict):
            add(fields, path, "Must be an object with 'enabled' and 'rules'.")
            continue
        for extra in sorted(set(state) - set(STATE_FIELDS)):
            add(fields, f"{path}.{extra}", "Unknown field.")
        if "enabled" in state:
            check_bool(fields, f"{path}.enabled", state["enabled"])
        if "rules" in state and not fields.get("key"):
            check_rules(fields, state["rules"], path=f"{path}.rules", segments=segments, flags=flags,
                        flag_key=key)
        if "offVariant" in state:
            check_off_variant(fields, state["offVariant"], kind=kind, variants=variants,
                              path=f"{path}.offVariant")
    if fields:
        raise ValidationFailed(fields)
    # a new flag is off everywhere: only the states it sets are writes to their environments
    policy.require(actor, "flags.add_flag", environments=list(states))
    protection.require_approval(key, [env_by_key[k] for k, state in states.items()
                                                         if any(state.get(f) for f in STATE_FIELDS)],
                                "a new flag's state other than off")
    if Flag.objects.filter(key=key).exists():
        raise _duplicate_key(key)

    with transaction.atomic():
        try:
            # its own savepoint: a create racing ours between the check above and this insert hits
            # the unique key; that is a Conflict (409), not a 500, and the caller's transaction lives on
            with transaction.atomic():
                flag = Flag.objects.create(key=key, name=name, description=description, tags=tags, kind=kind,
                                           variants=variants, salt=salt, stickiness=stickiness)
        except IntegrityError:
            raise _duplicate_key(key) from None
        created = [
            FlagState.objects.create(flag=flag, environment=env, enabled=states.get(env.key, {}).get("enabled", False),
                                     rules=states.get(env.key, {}).get("rules", []),
                                     off_variant=states.get(env.key, {}).get("offVariant") or "")
            for env in envs
        ]
        versions = _bump(envs)
        audit_record(actor=actor, action="flag.created", target_type="flag", target_key=key, after={
            **flag_data(flag), "states": {s.environment.key: _state_fields(s) for s in created}})
        _after_commit(versions, "created", flag_key=key)
    return flag


def _duplicate_key(key):
    return Conflict(f"A flag with key '{key}' already exists.", fields={"key": ["Already exists."]})


def _state_fields(state):
    data = flag_state_data(state)
    return {k: data[k] for k in ("enabled", "rules", "offVariant", "killed", "killedReason", "version") if k in data}


def flag_update(*, actor, flag, environment, data, expected_version=None):
    """Change flag fields (name, description, tags, kind, variants; all environments) and/or this
    environment's state fields (enabled, rules). `expected_version` is the state's version the
    caller saw: a different current version -> Conflict. Returns the FlagState.
    environment=None changes flag fields only and returns the Flag."""
    if environment is None:
        return _flag_fields_update(actor=actor, flag=flag, data=data)
    env = environment_get(environment)
    fields = {}
    if not isinstance(data, dict):
        raise ValidationFailed({"non_field_errors": ["Expected an object."]})
    for name in sorted(set(data) - set(FLAG_FIELDS) - set(STATE_FIELDS)):
        if name == "key":
            if data["key"] != flag.key:
                add(fields, "key", "Flag keys cannot be changed.")
        else:
            add(fields, name, "Unknown field.")
    if expected_version is not None and (isinstance(expected_version, bool) or not str(expected_version).isdigit()):
        add(fields, "version", "Must be a positive integer.")
    if fields:
        raise ValidationFailed(fields)

    with transaction.atomic():
        state = _locked_state(flag, env)
        flag = state.flag
        if expected_version is not None and int(expected_version) != state.version:
            raise Conflict(f"Flag '{flag.key}' in '{env.key}' is at version {state.version}, "
                           f"not {expected_version}: reload and retry.", fields={"version": ["Stale version."]})
        kind = data.get("kind", flag.kind)
        variants = data.get("variants", flag.variants)
        _check_flag_fields(fields, data, kind=kind, variants=variants)
        if "enabled" in data:
            check_bool(fields, "enabled", data["enabled"])
        if "rules" in data:
            check_rules(fields, data["rules"], segments=segment_conditions_map(),
                        flags=prerequisite_map(exclude_key=flag.key), flag_key=flag.key)
        if "offVariant" in data:
            check_off_variant(fields, data["offVariant"], kind=kind, variants=variants)
        if not fields and ("kind" in data or "variants" in data):
            _check_off_variants_kept(fields, flag, kind, variants, except_state=state if "offVariant" in data else None)
        if fields:
            raise ValidationFailed(fields)

        before = flag_state_data(state)
        if "offVariant" in data:
            data = {**data, "offVariant": data["offVariant"] or ""}
        flag_changes = {k: data[k] for k in FLAG_FIELDS if k in data and data[k] != getattr(flag, k)}
        state_changes = {STATE_ATTRS[k]: data[k] for k in STATE_FIELDS
                         if k in data and data[k] != getattr(state, STATE_ATTRS[k])}
        if flag_changes.get("kind") == Flag.Kind.BOOLEAN and "variants" not in data:
            flag_changes["variants"] = []
        # the flag's own fields serve every environment; its state, this one
        policy.require(actor, "flags.change_flag", environments=policy.ALL if flag_changes else [env.key])
        if not flag_changes and not state_changes:
            return state
        if set(flag_changes) & set(protection.EVALUATION_FIELDS):
            protection.require_approval(flag, Environment.objects.all(), "changing the flag's variants or hashing")
        if state_changes:
            protection.require_approval(flag, [env], "changing the state")
        for k, v in flag_changes.items():
            setattr(flag, k, list(v) if isinstance(v, tuple) else v)
        for k, v in state_changes.items():
            setattr(state, k, v)
        if flag_changes:
            flag.save()
            FlagState.objects.filter(flag=flag).exclude(pk=state.pk).update(version=F("version") + 1)
            envs = list(Environment.objects.all())
        else:
            envs = [env]
        state.version += 1
        state.save()
        versions = _bump(envs)
        audit_record(actor=actor, action="flag.updated", target_type="flag", target_key=flag.key,
                     environment=env.key, before=before, after=flag_state_data(state))
        _after_commit(versions, "updated", flag_key=flag.key)
    return state


def _check_off_variants_kept(fields, flag, kind, variants, except_state=None):
    """A variant change must not remove (or a kind change orphan) any environment's off variant."""
    states = FlagState.objects.filter(flag_id=flag.pk).exclude(off_variant="").select_related("environment")
    keys = {v.get("key") for v in variants or () if isinstance(v, dict)} if kind == Flag.Kind.MULTIVARIATE else set()
    for other in states:
        if except_state is not None and other.pk == except_state.pk:
            continue
        if other.off_variant not in keys:
            add(fields, "variants", f"Variant '{other.off_variant}' is served when off in "
                                    f"'{other.environment.key}': choose another off variant there first.")


def check_flag_fields(data, *, flag=None):
    """Field errors for flag-level fields (name, description, tags, kind, variants) in `data`."""
    fields = {}
    for name in sorted(set(data) - set(FLAG_FIELDS)):
        if name == "key":
            if flag is not None and data["key"] != flag.key:
                add(fields, "key", "Flag keys cannot be changed.")
            elif flag is None:
                check_key(fields, data["key"])
        else:
            add(fields, name, "Unknown field.")
    kind = data.get("kind", flag.kind if flag else "boolean")
    variants = data.get("variants", flag.variants if flag else [])
    _check_flag_fields(fields, data, kind=kind, variants=variants)
    return fields


def check_state_rules(rules, *, flag_key, path="rules"):
    """Field errors for a state's rules (paths like "rules[2].operator")."""
    fields = {}
    check_rules(fields, rules, path=path, segments=segment_conditions_map(),
                flags=prerequisite_map(exclude_key=flag_key), flag_key=flag_key)
    return fields


def _flag_fields_update(*, actor, flag, data):
    if not isinstance(data, dict):
        raise ValidationFailed({"non_field_errors": ["Expected an object."]})
    with transaction.atomic():
        locked = Flag.objects.select_for_update().filter(pk=flag.pk).first()
        if locked is None:
            raise NotFound(f"Flag '{flag.key}' not found.")
        fields = check_flag_fields(data, flag=locked)
        if not fields and ("kind" in data or "variants" in data):
            _check_off_variants_kept(fields, locked, data.get("kind", locked.kind),
                                     data.get("variants", locked.variants))
        if fields:
            raise ValidationFailed(fields)
        changes = {k: data[k] for k in FLAG_FIELDS if k in data and data[k] != getattr(locked, k)}
        if changes.get("kind") == Flag.Kind.BOOLEAN and "variants" not in data:
            changes["variants"] = []
        policy.require(actor, "flags.change_flag")
        if not changes:
            return locked
        if set(changes) & set(protection.EVALUATION_FIELDS):
            protection.require_approval(locked, Environment.objects.all(), "changing the flag's variants or hashing")
        before = flag_data(locked)
        for k, v in changes.items():
            setattr(locked, k, list(v) if isinstance(v, tuple) else v)
        locked.save()
        _flag_fields_changed(actor, locked, before)
    return locked


def _flag_fields_changed(actor, flag, before):
    """After a flag-level field changed (name, variants, tags...): those travel in every
    environment's snapshot, so every state and environment version moves; audited as flag.updated."""
    FlagState.objects.filter(flag=flag).update(version=F("version") + 1)
    versions = _bump(list(Environment.objects.all()))
    audit_record(actor=actor, action="flag.updated", target_type="flag", target_key=flag.key,
                 before=before, after=flag_data(flag))
    _after_commit(versions, "updated", flag_key=flag.key)


def flag_toggle(*, actor, flag, environment, enabled=None, expected_version=None, unchanged_is_conflict=False):
    """Turn a flag on or off in one environment; enabled=None flips it. Returns the FlagState.

    Page and admin actions were decided on what the operator saw: `expected_version` (the state's
    version the page showed) that moved, or with `unchanged_is_conflict` a state already `enabled`,
    is a Conflict and nothing is written, so a stale "Turn on" never undoes someone else's change.
    Both are checked under the row locks, so no write slips in between the check and the toggle."""
    env = environment_get(environment)
    if enabled is not None and not isinstance(enabled, bool):
        raise ValidationFailed({"enabled": ["Must be true or false."]})
    if expected_version is not None and (isinstance(expected_version, bool) or not str(expected_version).isdigit()):
        raise ValidationFailed({"version": ["Must be a positive integer."]})
    policy.require(actor, "flags.change_flag", environments=[env.key])
    with transaction.atomic():
        state = _locked_state(flag, env)
        now = "on" if state.enabled else "off"
        protection.require_approval(flag, [env], "turning it on or off")
        if expected_version is not None and int(expected_version) != state.version:
            raise Conflict(f"it changed since you loaded the page (now {'KILLED, ' if state.killed else ''}{now}, "
                           f"version {state.version}, you saw {expected_version}): nothing changed, "
                           "check the current state and try again.", fields={"version": ["Stale version."]})
        if unchanged_is_conflict and state.enabled == enabled:
            raise Conflict(f"it is already {now}: nothing changed.")
        before = flag_state_data(state)
        state.enabled = (not state.enabled) if enabled is None else enabled
        state.version += 1
        state.save(update_fields=["enabled", "version", "updated_at"])
        versions = _bump([env])
        audit_record(actor=actor, action="flag.toggled", target_type="flag", target_key=flag.key,
                     environment=env.key, before=before, after=flag_state_data(state))
        _after_commit(versions, "toggled", flag_key=flag.key)
    return state


def flag_kill(*, actor, flag, reason, environments=None):
    """Kill switch: the flag evaluates off (reason KILLED) in the given environments (default all),
    whatever its rules. One audit entry per environment. Returns the FlagStates."""
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed({"reason": ["Say why the flag is being killed."]})
    if len(reason) > 2000:
        raise ValidationFailed({"reason": ["At most 2000 characters."]})
    envs = _environments(environments)
    policy.require(actor, "flags.change_flag", environments=[env.key for env in envs])
    now = timezone.now()
    states = []
    with transaction.atomic():
        for env in sorted(envs, key=lambda e: e.pk):
            state = _locked_state(flag, env)
            before = flag_state_data(state)
            state.killed, state.killed_reason, state.killed_by, state.killed_at = True, reason.strip(), actor.label, now
            state.version += 1
            state.save()
            states.append((state, before))
        versions = _bump(envs)
        for state, before in states:
            audit_record(actor=actor, action="flag.killed", target_type="flag", target_key=flag.key,
                         environment=state.environment.key, before=before, after=flag_state_data(state),
                         reason=reason.strip())
        _after_commit(versions, "killed", flag_key=flag.key)
    return [state for state, _ in states]


def flag_restore(*, actor, flag, environments=None, reason=""):
    """Undo a kill in the given environments (default all); environments not killed are left alone.
    Returns the FlagStates that were restored."""
    envs = _environments(environments)
    policy.require(actor, "flags.change_flag", environments=[env.key for env in envs])
    restored = []
    with transaction.atomic():
        for env in sorted(envs, key=lambda e: e.pk):
            state = _locked_state(flag, env)
            if not state.killed:
                continue
            before = flag_state_data(state)
            state.killed, state.killed_reason, state.killed_by, state.killed_at = False, "", "", None
            state.version += 1
            state.save()
            restored.append((state, before))
        if not restored:
            return []
        protection.require_approval(flag, [state.environment for state, _ in restored], "restoring it after a kill")
        versions = _bump([state.environment for state, _ in restored])
        for state, before in restored:
            audit_record(actor=actor, action="flag.restored", target_type="flag", target_key=flag.key,
                         environment=state.environment.key, before=before, after=flag_state_data(state),
                         reason=reason or "")
        _after_commit(versions, "restored", flag_key=flag.key)
    return [state for state, _ in restored]


def _refuse_if_referenced(flag, verb):
    referrers = flags_referencing(flag_key=flag.key, exclude=flag.key)
    if referrers:
        raise Conflict(f"Cannot {verb} flag '{flag.key}': it is a prerequisite of {', '.join(referrers)}.",
                       fields={"key": [f"Referenced by {', '.join(referrers)}."]})


def flag_archive(*, actor, flag):
    """Hide a flag: it disappears from snapshots (evaluates FLAG_NOT_FOUND) but keeps its history."""
    policy.require(actor, "flags.delete_flag")
    _refuse_if_referenced(flag, "archive")
    return _flag_set_archived(actor=actor, flag=flag, archived=True)


def flag_unarchive(*, actor, flag):
    policy.require(actor, "flags.change_flag")
    return _flag_set_archived(actor=actor, flag=flag, archived=False)


def _flag_set_archived(*, actor, flag, archived):
    """Archive or bring back a flag in every environment (clients hear deleted / created)."""
    with transaction.atomic():
        flag = Flag.objects.select_for_update().get(pk=flag.pk)
        if flag.archived == archived:
            return flag
        protection.require_approval(flag, Environment.objects.all(), "archiving" if archived else "unarchiving")
        before = flag_data(flag)
        flag.archived = archived
        flag.save(update_fields=["archived", "updated_at"])
        FlagState.objects.filter(flag=flag).update(version=F("version") + 1)
        versions = _bump(list(Environment.objects.all()))
        audit_record(actor=actor, action="flag.archived" if archived else "flag.unarchived",
                     target_type="flag", target_key=flag.key, before=before, after=flag_data(flag))
        _after_commit(versions, "deleted" if archived else "created", flag_key=flag.key)
    return flag


def flag_tags_change(*, actor, flag, add=(), remove=()):
    """Add and/or remove tags of one flag (the admin's bulk tag actions); tags already there are not
    added twice, order is kept. Audited as flag.updated; a flag whose tags end up the same is left
    alone (nothing written). Returns the Flag."""
    fields = {}
    for name, tags in (("add", add), ("remove", remove)):
        if isinstance(tags, str):
            tags = [tags]
        check_tags(fields, list(tags) if isinstance(tags, (list, tuple)) else tags, path=name)
    if fields:
        raise ValidationFailed(fields)
    policy.require(actor, "flags.change_flag")
    add = [t.strip() for t in ([add] if isinstance(add, str) else add)]
    remove = {t.strip() for t in ([remove] if isinstance(remove, str) else remove)}
    with transaction.atomic():
        locked = Flag.objects.select_for_update().filter(pk=flag.pk).first()
        if locked is None:
            raise NotFound(f"Flag '{flag.key}' not found.")
        current = list(locked.tags or [])
        tags = [t for t in current if t not in remove]
        tags += [t for t in dict.fromkeys(add) if t not in tags and t not in remove]
        if tags == current:
            return locked
        fields = {}
        check_tags(fields, tags)
        if fields:
            raise ValidationFailed(fields)
        before = flag_data(locked)
        locked.tags = tags
        locked.save(update_fields=["tags", "updated_at"])
        _flag_fields_changed(actor, locked, before)
    return locked


def flag_delete(*, actor, flag):
    """Delete a flag and its states for good (the audit history stays). Its change requests,
    scheduled changes and rollout plans go with it; the audit entry lists the change requests, and
    their own entries (opened, approved, ...) stay in the audit log."""
    policy.require(actor, "flags.delete_flag")
    _refuse_if_referenced(flag, "delete")
    with transaction.atomic():
        flag = Flag.objects.select_for_update().get(pk=flag.pk)
        protection.require_approval(flag, Environment.objects.all(), "deleting it")
        states = FlagState.objects.select_related("flag", "environment").filter(flag=flag)
        before = {**flag_data(flag), "states": {s.environment.key: _state_fields(s) for s in states}}
        requests = getattr(flag, "change_requests", None)  # the changes app's; they go with the flag
        if requests is not None and requests.exists():
            before["changeRequests"] = [
                {"id": pk, "status": status, "title": title, "author": author} for pk, status, title, author in
                requests.order_by("id").values_list("id", "status", "title", "author_label")]
        key = flag.key
        flag.delete()
        versions = _bump(list(Environment.objects.all()))
        audit_record(actor=actor, action="flag.deleted", target_type="flag", target_key=key, before=before)
        _after_commit(versions, "deleted", flag_key=key)


def environment_states_ensure(*, actor, environment):
    """Give every flag a state in `environment` (after creating an environment)."""
    env = environment_get(environment)
    policy.require(actor, "flags.change_environment", project=env.project_id)
    with transaction.atomic():
        missing = Flag.objects.exclude(states__environment=env)
        created = [FlagState.objects.create(flag=flag, environment=env) for flag in missing]
        if created:
            versions = _bump([env])
            audit_record(actor=actor, action="environment.states_created", target_type="environment",
                         target_key=env.key, environment=env.key,
                         after={"flags": [s.flag.key for s in created]})
            _after_commit(versions, "created")
    return created


# -- API keys ------------------------------------------------------------------------------------

def hash_api_key(raw_key):
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _api_key_data(api_key):
    return {
        "name": api_key.name,
        "kind": api_key.kind,
        "prefix": api_key.prefix,
        "environment": api_key.environment.key if api_key.environment_id else None,
        "user": api_key.user.get_username() if api_key.user_id else None,
        "revoked": api_key.revoked_at is not None,
        **({"relayEnvironments": list(api_key.relay_environments)} if api_key.kind == ApiKey.Kind.RELAY else {}),
    }


def _is_operator(actor):
    """The system / an operator's command (manage.py): no user, no API key behind the call."""
    return getattr(actor.user, "pk", None) is None and actor.api_key is None


def check_api_key_user(actor, user):
    """Field errors when `actor` may not mint a management token acting as `user`: a token acts
    with its user's permissions, so only a superuser (or the operator's command line) may mint one
    for someone else; everyone else only for themselves."""
    if user is None or _is_operator(actor):
        return {}
    me = actor.user
    if me is not None and me.is_active and (me.is_superuser or me.pk == user.pk):
        return {}
    return {"user": ["You may create a management token only for yourself (a superuser may for anyone)."]}


def check_api_key_revoke(actor, api_key):
    """Error message when `actor` may not revoke `api_key`: another user's management token is
    theirs to revoke (or a superuser's / the operator's); SDK keys belong to the project."""
    if api_key.kind != ApiKey.Kind.MANAGEMENT or _is_operator(actor):
        return None
    me = actor.user
    if me is not None and me.is_active and (me.is_superuser or me.pk == api_key.user_id):
        return None
    return (f"Key {api_key.prefix}... is another user's management token: only they or a superuser may revoke it.")


def api_key_create(*, actor, name, kind, environment=None, user=None, narrowed=False, relay_environments=None):
    """A new key of the current project; returns (ApiKey, raw_key). Only the sha256 of the key is
    stored: show it once. SDK keys: "sdk_<env>_<token>" (need `environment`); management tokens:
    "mgmt_<token>" (need `user`, and check_api_key_user: a non-superuser only for themselves);
    ``narrowed``: the token works in the current project only. Relay tokens: "relay_<token>", for
    an edge relay (relay/): read the snapshots of ``relay_environments`` (environment keys of the
    current project; empty = all of them) and every SDK key hash of the project, post counts."""
    fields = {}
    check_text(fields, "name", name, required=True, max_length=200)
    env = None
    relay_keys = []
    if relay_environments and kind != ApiKey.Kind.RELAY:
        add(fields, "relayEnvironments", "Only relay tokens name relay environments.")
    if kind == ApiKey.Kind.RELAY:
        if environment is not None:
            add(fields, "environment", "Relay tokens are not tied to one environment; use relayEnvironments.")
        if user is not None:
            add(fields, "user", "Relay tokens do not act as a user.")
        if relay_environments is not None and (not isinstance(relay_environments, (list, tuple))
                                               or not all(isinstance(k, str) for k in relay_environments)):
            add(fields, "relayEnvironments", "A list of environment keys.")
        else:
            for wanted in relay_environments or ():
                try:
                    relay_keys.append(environment_get(wanted).key)
                except ValidationFailed:
                    add(fields, "relayEnvironments", f"Unknown environment '{wanted}'.")
            relay_keys = sorted(set(relay_keys))
    elif kind == ApiKey.Kind.SDK:
        if environment is None:
            add(fields, "environment", "SDK keys belong to one environment.")
        else:
            try:
                env = environment_get(environment)
            except ValidationFailed as exc:
                fields.update(exc.fields)
        if user is not None:
            add(fields, "user", "SDK keys do not act as a user; use a management token.")
    elif kind == ApiKey.Kind.MANAGEMENT:
        if user is None or getattr(user, "pk", None) is None:
            add(fields, "user", "Management tokens act as a user.")
        if environment is not None:
            add(fields, "environment", "Management tokens are not tied to an environment.")
        if not fields:
            fields.update(check_api_key_user(actor, user))
    else:
        add(fields, "kind", f"Must be one of: {', '.join(ApiKey.Kind.values)}.")
    if narrowed and kind != ApiKey.Kind.MANAGEMENT:
        add(fields, "narrowed", "Only management tokens are narrowed: an SDK key works in its environment's project.")
    if fields:
        raise ValidationFailed(fields)
    if env is not None:  # a management token acts with its user's own rights (check_api_key_user)
        policy.require(actor, "flags.add_apikey", project=env.project_id)
    relay = kind == ApiKey.Kind.RELAY
    if relay:
        policy.require(actor, "flags.add_apikey", project=scope.current())

    token = secrets.token_urlsafe(32)
    raw_key = f"sdk_{env.key}_{token}" if env is not None else f"relay_{token}" if relay else f"mgmt_{token}"
    with transaction.atomic():
        api_key = ApiKey.objects.create(name=name, kind=kind, environment=env,
                                        user=user if env is None and not relay else None,
                                        project_id=env.project_id if env is not None else scope.current(),
                                        narrowed=bool(narrowed), relay_environments=relay_keys,
                                        prefix=raw_key[:12], key_hash=hash_api_key(raw_key))
        audit_record(actor=actor, action="apikey.created", target_type="apikey", target_key=api_key.prefix,
                     environment=env.key if env else "", after=_api_key_data(api_key))
    return api_key, raw_key


def api_key_revoke(*, actor, api_key):
    """Revoke a key (kept for the record). Other processes stop accepting it within their key-cache TTL.
    Another user's management token: ValidationFailed unless a superuser (check_api_key_revoke)."""
    with transaction.atomic():
        api_key = (ApiKey.objects.select_for_update(of=("self",))
                   .select_related("environment", "user").get(pk=api_key.pk))
        refused = check_api_key_revoke(actor, api_key)
        if refused:
            raise ValidationFailed(message=refused)
        if api_key.kind in (ApiKey.Kind.SDK, ApiKey.Kind.RELAY):
            policy.require(actor, "flags.change_apikey", project=api_key.project_id)
        if api_key.revoked_at is not None:
            return api_key
        before = _api_key_data(api_key)
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(actor=actor, action="apikey.revoked", target_type="apikey", target_key=api_key.prefix,
                     environment=api_key.environment.key if api_key.environment_id else "",
                     before=before, after=_api_key_data(api_key))
        transaction.on_commit(lambda: _forget_api_key(api_key.key_hash), robust=True)
    return api_key


def _forget_api_key(key_hash):
    try:
        from flagsite.api.authentication import forget_api_key
    except ImportError:  # the API layer is optional for the core
        return
    forget_api_key(key_hash)
