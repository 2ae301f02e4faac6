"""Every read query shared by the API, admin, pages, commands and the snapshot builder."""

from django.db.models import Q
from feature_flag_client.engine import prerequisite_refs, segment_refs

from audit.models import AuditEntry
from flags.errors import NotFound, ValidationFailed
from flags.models import ApiKey, Environment, Flag, FlagState
from projects import scope


def environment_list():
    return list(Environment.objects.all())


def environment_get(environment):
    """An Environment of the current project from an instance, a key or a ref (projects/scope.py);
    unknown, or of another project -> ValidationFailed on `environment`."""
    if isinstance(environment, Environment):
        return environment
    project, key = scope.split(environment) if "." in environment else (scope.current(), environment)
    env = Environment.objects.filter(key=key).first() if project == scope.current() else None
    if env is None:
        raise ValidationFailed({"environment": [f"Unknown environment '{environment}'."]})
    return env


def environment_version(environment_key):
    """The environment's current version (one indexed row), or None if it does not exist."""
    project, key = scope.split(environment_key)
    return Environment.all_objects.filter(project_id=project, key=key).values_list("version", flat=True).first()


def flag_get(key, *, include_archived=True):
    qs = Flag.objects.all() if include_archived else Flag.objects.filter(archived=False)
    flag = qs.filter(key=key).first()
    if flag is None:
        raise NotFound(f"Flag '{key}' not found.")
    return flag


def flag_state_get(*, flag, environment):
    env = environment_get(environment)
    return FlagState.objects.select_related("flag", "environment").get(flag=flag, environment=env)


def flag_state_list(*, environment, tag=None, enabled=None, search=None, include_archived=False):
    """FlagStates of one environment (with their flag), filtered; ordered by flag key."""
    env = environment_get(environment)
    qs = FlagState.objects.select_related("flag", "environment").filter(environment=env).order_by("flag__key")
    if not include_archived:
        qs = qs.filter(flag__archived=False)
    if enabled is not None:
        qs = qs.filter(enabled=enabled)
    if search:
        qs = qs.filter(Q(flag__key__icontains=search) | Q(flag__name__icontains=search)
                       | Q(flag__description__icontains=search))
    if tag:
        # JSON list containment is not portable (SQLite); filter tags in Python over the keys.
        keys = [f.key for f in Flag.objects.only("key", "tags") if tag in (f.tags or [])]
        qs = qs.filter(flag__key__in=keys)
    return qs


def flag_data(flag):
    return {
        "key": flag.key,
        "name": flag.name,
        "description": flag.description,
        "tags": list(flag.tags or []),
        "kind": flag.kind,
        "variants": list(flag.variants or []),
        "salt": flag.salt,
        "stickiness": flag.stickiness,
        "archived": flag.archived,
    }


def flag_state_data(state):
    """One flag in one environment: what audit entries and events record."""
    return {
        **flag_data(state.flag),
        "environment": state.environment.key,
        "enabled": state.enabled,
        "rules": state.rules,
        **({"offVariant": state.off_variant} if state.flag.kind == Flag.Kind.MULTIVARIATE else {}),
        "killed": state.killed,
        "killedReason": state.killed_reason,
        "killedBy": state.killed_by,
        "killedAt": state.killed_at.isoformat() if state.killed_at else None,
        "version": state.version,
        "createdAt": state.flag.created_at.isoformat() if state.flag.created_at else None,
        "updatedAt": max(state.updated_at, state.flag.updated_at).isoformat() if state.updated_at else None,
    }


def engine_state(state):
    """The engine's input for one flag state (docs/rules.md)."""
    flag = state.flag
    data = {
        "key": flag.key,
        "name": flag.name,  # not read by the engine; WebSocket events and SDK listings show it
        "kind": flag.kind,
        "enabled": state.enabled,
        "killed": state.killed,
        "rules": state.rules or [],
        "version": state.version,
    }
    if flag.kind == Flag.Kind.MULTIVARIATE:
        data["variants"] = flag.variants or []
        if state.off_variant:
            data["offVariant"] = state.off_variant
    if flag.salt:
        data["salt"] = flag.salt
    if flag.stickiness:
        data["stickiness"] = flag.stickiness
    return data


def flags_referencing(*, flag_key=None, segment_key=None, exclude=None):
    """Keys of flags whose rules (in any environment) reference a flag or a segment."""
    found = set()
    for state in FlagState.objects.select_related("flag").filter(flag__project_id=scope.current()).exclude(rules=[]):
        if exclude is not None and state.flag.key == exclude:
            continue
        if (flag_key and flag_key in prerequisite_refs(state.rules)) or (
                segment_key and segment_key in segment_refs(state.rules)):
            found.add(state.flag.key)
    return sorted(found)


def audit_list(*, limit=100, target_type=None, target_key=None, environment=None):
    qs = AuditEntry.objects.filter(project=scope.current()).order_by("-id")
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_key:
        qs = qs.filter(target_key=target_key)
    if environment:
        qs = qs.filter(environment=environment)
    return qs[:limit] if limit else qs


def api_key_list(*, kind=None, environment=None, user=None, active=None):
    qs = ApiKey.objects.select_related("environment", "user")
    if kind:
        qs = qs.filter(kind=kind)
    if environment:
        qs = qs.filter(environment=environment_get(environment))
    if user is not None:
        qs = qs.filter(user=user)
    if active is not None:
        qs = qs.filter(revoked_at__isnull=active)
    return qs


def flag_explain(*, flag, user_id=None, context=None, environments=None):
    """{environment key: engine Explanation} of one flag for one user, side by side, from each
    environment's in-process snapshot: exactly what evaluation answers there, and why. Unknown
    environment keys -> ValidationFailed on "environments[i]"."""
    from flags.snapshot import get_snapshot

    if environments is None:
        keys = [environment.key for environment in environment_list()]
    else:
        keys = list(dict.fromkeys(environments))
        known = set(Environment.objects.filter(key__in=keys).values_list("key", flat=True))
        unknown = {f"environments[{environments.index(key)}]": [f"Unknown environment '{key}'."]
                   for key in keys if key not in known}
        if unknown:
            raise ValidationFailed(unknown)
    return {key: get_snapshot(scope.here(key)).explain(flag.key, user_id, context or {}) for key in keys}
