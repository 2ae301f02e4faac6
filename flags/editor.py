"""The targeting editor's JSON endpoints on the dashboard (staff session + CSRF), used by the flag
page and the admin's rules widget (flags/static/flags/editor/):

- POST /flags/<key>/check        {rules?, variants?} -> {fields, summary}: the engine's validator, as
                                 the editor types; writes nothing.
- POST /flags/<key>/targeting    {environment, rules, version} -> the saved state (flag_update).
- POST /flags/<key>/variants     {variants, stickiness?, offVariants?, seen} -> the saved variants
                                 (flag_update) and, per environment, the variant served when off.
- POST /flags/<key>/evaluate-as  {userId, context} -> the explain API's answer, every environment.
- GET  /flags/<key>/recent-contexts -> {"enabled", "contexts": [{at, environment, userId, context,
                                 enabled, variant, reason[, truncated]}]}: the last 10 evaluations'
                                 users and contexts sampled for this flag (analytics/recent.py),
                                 newest first, for "Evaluate as".

Same permissions as REST: changing targeting or checking it needs flags.change_flag, evaluating as a
user or reading the recent contexts flags.view_flag. Bad input is a 400 {"error": {"code", "message", "fields": {path: [...]}}}
and writes nothing; a stale version is a 409."""

import json

from django.db import transaction
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from feature_flag_client.engine.lookups import DEVICES
from feature_flag_client.engine.operators import CASE_INSENSITIVE_OPERATORS, OPERATORS
from feature_flag_client.engine.validation import _KEYS, _OPERATORS  # the validator's own tables

from analytics import recent
from analytics.counters import recorder
from audit.actor import Actor
from flags import services
from flags.apis import explain_answer
from flags.errors import Conflict, Forbidden, NotFound, ValidationFailed
from flags.models import Flag, FlagState
from flags.pages import CHANGE_FLAGS, VIEW_FLAGS, _flag_or_404, staff_required
from flags.rule_text import condition, describe
from flags.serializers import ExplainInputSerializer
from flagsite.api.exceptions import flatten
from segments.selectors import segment_rules_map

COMMON_ATTRIBUTES = ("country", "plan", "email", "appVersion", "userAgent", "ip", "device", "sessionId")


def page_data(user, flag, states):
    """The flag page's editor data: "evaluate as" for everyone who may view the flag; the targeting
    and variants editors for those who may change it."""
    data = {"options": {"urls": {name: reverse(f"page-flag-{name}", args=[flag.key])
                                 for name in ("evaluate-as", "recent-contexts")}},
            "environments": [{"key": s.environment.key, "name": s.environment.name} for s in states]}
    if user.has_perms(CHANGE_FLAGS):
        data["options"] = editor_options(flag)
        data["states"] = [{"environment": s.environment.key, "name": s.environment.name, "rules": s.rules,
                           "version": s.version} for s in states]
        if flag.kind == Flag.Kind.MULTIVARIATE:
            data["variants"], data["stickiness"] = flag.variants, flag.stickiness
            data["offVariants"] = {s.environment.key: s.off_variant for s in states}
    return data


def _fields_in(rules):
    for rule in rules if isinstance(rules, list) else []:
        if isinstance(rule, dict):
            if rule.get("type") == "custom" and isinstance(rule.get("field"), str):
                yield rule["field"]
            yield from _fields_in(rule.get("rules"))
            yield from _fields_in([rule.get("rule")])


def editor_options(flag):
    """What the editor offers, from the engine's own tables: rule types and their operators, the
    devices, the segments (with their conditions in words, shown on hover), the flags a
    prerequisite may name, and context attributes: those seen in this flag's recent evaluations
    first (`recentAttributes`), then those rules already use, then common ones."""
    segments = segment_rules_map()
    seen = recent.attributes_seen(recorder.recent.read(flag.key))
    used = [field for rules in FlagState.objects.filter(flag__project_id=flag.project_id).values_list("rules", flat=True) for field in _fields_in(rules)]
    used += [field for rules in segments.values() for field in _fields_in(rules)]
    return {
        "flag": flag.key,
        "kind": flag.kind,
        "types": list(_KEYS),
        "operators": {**{kind: list(ops) for kind, ops in _OPERATORS.items()}, "custom": list(OPERATORS)},
        "valueless": [name for name, op in OPERATORS.items() if not op.needs_value] + ["enabled", "disabled"],
        "caseInsensitive": sorted(CASE_INSENSITIVE_OPERATORS),
        "devices": list(DEVICES),
        "segments": {key: " and ".join(condition(rule) for rule in rules) for key, rules in sorted(segments.items())},
        "flags": list(Flag.objects.filter(archived=False).exclude(pk=flag.pk).values_list("key", flat=True)),
        "attributes": list(dict.fromkeys([*seen, *sorted(set(used), key=used.count, reverse=True),
                                          *COMMON_ATTRIBUTES])),
        "recentAttributes": seen,
        "urls": {name: reverse(f"page-flag-{name}", args=[flag.key])
                 for name in ("check", "targeting", "variants", "evaluate-as", "recent-contexts")},
    }


def error(status, code, message, fields=None):
    return JsonResponse({"error": {"code": code, "message": message, "fields": fields or {}}}, status=status)


def invalid(fields):
    path, messages = next(iter(fields.items()))
    return error(400, "validation_error", f"{path}: {messages[0]}" if path else messages[0], fields)


def body_of(request, allowed):
    """The JSON object posted, with only `allowed` keys; ValidationFailed otherwise."""
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed({"": ["Send a JSON object."]}) from None
    if not isinstance(body, dict):
        raise ValidationFailed({"": ["Send a JSON object."]})
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationFailed({name: ["Unknown field."] for name in unknown})
    return body


def json_view(perms):
    """POST only, staff with `perms`; service errors become the JSON error shape."""

    def decorate(view):
        @require_POST
        @staff_required(perms=perms)
        def wrapper(request, key):
            flag = _flag_or_404(key)
            try:
                return JsonResponse(view(request, flag))
            except ValidationFailed as exc:
                return invalid(exc.fields) if exc.fields else error(400, "validation_error", exc.message)
            except Conflict as exc:
                return error(409, "conflict", exc.message, exc.fields)
            except NotFound as exc:
                return error(404, "not_found", exc.message)
            except Forbidden as exc:  # e.g. an editor of development only, saving production's rules
                return error(403, "permission_denied", exc.message)

        wrapper.__name__ = view.__name__
        return wrapper

    return decorate


@json_view(CHANGE_FLAGS)
def check(request, flag):
    body = body_of(request, ("rules", "variants"))
    fields = {}
    if "rules" in body:
        fields.update(services.check_state_rules(body["rules"], flag_key=flag.key))
    if "variants" in body:
        fields.update(services.check_flag_fields({"variants": body["variants"]}, flag=flag))
    rules = body.get("rules") if isinstance(body.get("rules"), list) else []
    variants = body["variants"] if isinstance(body.get("variants"), list) else flag.variants
    return {"fields": fields, "summary": describe(rules, True, False, variants)}


@json_view(CHANGE_FLAGS)
def save_targeting(request, flag):
    body = body_of(request, ("environment", "rules", "version"))
    missing = {name: ["This field is required."] for name in ("environment", "rules", "version")
               if body.get(name) is None}
    if missing:
        raise ValidationFailed(missing)
    if not isinstance(body["environment"], str):
        raise ValidationFailed({"environment": ["Must be an environment key."]})
    state = services.flag_update(actor=Actor.from_request(request), flag=flag, environment=body["environment"],
                                 data={"rules": body["rules"]}, expected_version=body["version"])
    return {"environment": state.environment.key, "version": state.version, "rules": state.rules,
            "summary": describe(state.rules, state.enabled, state.killed, state.flag.variants)}


@json_view(CHANGE_FLAGS)
def save_variants(request, flag):
    """`seen`: the variants and stickiness (and offVariants, when sent) the editor loaded; if they
    changed since, a 409 (the optimistic lock of a flag-level change, as the state version is for
    targeting). `offVariants`: {environment: variant key or ""}, each environment's variant served
    when off; one that names an existing variant is set before the variants change, one that
    names a new variant after it, so removing a variant and choosing another off variant is one save."""
    body = body_of(request, ("variants", "stickiness", "offVariants", "seen"))
    missing = {name: ["This field is required."] for name in ("variants", "seen") if name not in body}
    if missing:
        raise ValidationFailed(missing)
    off = body.get("offVariants", {})
    if not isinstance(off, dict) or not all(isinstance(v, str) for v in off.values()):
        raise ValidationFailed({"offVariants": ["Must be an object of environment -> variant key or \"\"."]})
    actor = Actor.from_request(request)
    with transaction.atomic():
        locked = Flag.objects.select_for_update().get(pk=flag.pk)  # the services' lock order starts here
        current_off = {s.environment.key: s.off_variant
                       for s in FlagState.objects.filter(flag=locked).select_related("environment")}
        seen = body["seen"] if isinstance(body["seen"], dict) else {}
        now = {"variants": locked.variants, "stickiness": locked.stickiness}
        if "offVariants" in seen:
            now["offVariants"] = current_off
        if seen != now:
            raise Conflict(f"The variants of '{flag.key}' changed since you loaded the page: reload and redo your "
                           "edit.", fields={"seen": ["Stale variants."]})
        old_keys = {v.get("key") for v in locked.variants or () if isinstance(v, dict)}
        changes = {env: key for env, key in off.items() if current_off.get(env) != key}
        later = {}
        for env, key in changes.items():
            if key and key not in old_keys:
                later[env] = key  # a variant this save adds: set once it exists
                continue
            try:
                services.flag_update(actor=actor, flag=locked, environment=env, data={"offVariant": key})
            except ValidationFailed as exc:
                raise ValidationFailed({f"offVariants.{env}": msgs for msgs in exc.fields.values()}) from None
        data = {k: body[k] for k in ("variants", "stickiness") if k in body}
        flag = services.flag_update(actor=actor, flag=locked, environment=None, data=data)
        for env, key in later.items():
            try:
                services.flag_update(actor=actor, flag=flag, environment=env, data={"offVariant": key})
            except ValidationFailed as exc:
                raise ValidationFailed({f"offVariants.{env}": msgs for msgs in exc.fields.values()}) from None
        current_off = {s.environment.key: s.off_variant
                       for s in FlagState.objects.filter(flag=flag).select_related("environment")}
    return {"variants": flag.variants, "stickiness": flag.stickiness, "offVariants": current_off}


@json_view(VIEW_FLAGS)
def evaluate_as(request, flag):
    serializer = ExplainInputSerializer(data=body_of(request, ("userId", "context", "environments")))
    if not serializer.is_valid():
        raise ValidationFailed(flatten(serializer.errors))
    return explain_answer(flag, dict(serializer.validated_data))


@require_GET
@staff_required(perms=VIEW_FLAGS)
def recent_contexts(request, key):
    """The flag's sampled recent evaluation contexts (this process's and, through the cache, every
    process's), newest first; none when FLAGS_RECENT_CONTEXTS is off."""
    flag = _flag_or_404(key)
    return JsonResponse({"enabled": recent.enabled(), "contexts": recorder.recent.read(flag.key)})
