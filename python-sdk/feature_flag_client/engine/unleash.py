"""Import an Unleash features document into Flagsite flag states.

``import_unleash(document)`` is a pure function: it takes what an Unleash server serves to its SDKs
(``GET /api/client/features``: ``{"version", "features": [...], "segments": [...]}``) and returns
``{"flags": [flag_state, ...], "segments": {key: rules}, "warnings": [text, ...]}`` in the rule
format of docs/rules.md, ready for ``compile_snapshot(flags=..., segments=...)``. It never raises
on odd input: what cannot be represented becomes a rule that matches nobody, with a warning.

Semantics follow Unleash's reference evaluator (Yggdrasil, used by the official SDKs) and are
checked by Unleash's client specification (tests/engine/test_unleash_conformance.py):

- strategies are OR'ed; a feature without strategies is on for everyone; an unknown (custom)
  strategy never matches. Within a strategy, its constraints, its segments' constraints and the
  strategy itself are AND'ed; a reference to a missing segment turns the strategy off.
- default, userWithId, gradualRolloutUserId / SessionId / Random, flexibleRollout (rollout,
  stickiness ``default`` / ``random`` / ``userId`` / ``sessionId`` / any context field, groupId as
  the hash salt), remoteAddress (addresses and CIDR blocks, invalid entries ignored) and
  applicationHostname (as ``context.hostname``).
- constraints: IN, NOT_IN, STR_CONTAINS, STR_STARTS_WITH, STR_ENDS_WITH, NUM_EQ/GT/GTE/LT/LTE,
  DATE_AFTER/BEFORE, SEMVER_EQ/GT/GTE/LT/LTE, REGEX (RE2 syntax, translated to Python's), IN_CIDR;
  ``inverted`` wraps the rule in ``not``; ``caseInsensitive`` applies to the string operators (IN
  and NOT_IN are always case-sensitive in Unleash). A constraint with an unknown operator or a value
  that does not parse (number, date, semver) is false whether inverted or not, as in Unleash.
- feature variants (weights, stickiness of the first variant, payloads kept as the variant value
  ``{"type", "value"}``, overrides); strategy variants become the ``variants`` / ``salt`` /
  ``stickiness`` of that strategy's rule, so the first matching strategy decides and falls back to
  the feature's variants when it has none.
- dependencies (parent enabled, disabled, or enabled with one of some variants) become ``flag``
  prerequisite rules; a parent that is missing or has its own parents (Unleash allows one level)
  makes the dependency unsatisfiable.

The Unleash context maps onto Flagsite's flat context with ``unleash_context(context)``: the
top-level fields (userId, sessionId, remoteAddress, environment, appName, currentTime) and the
``properties`` are merged into one dict, top-level fields winning; the user id is returned apart.
"""

import ipaddress
import math
import re

from .operators import check_regex, parse_datetime, parse_semver
from .validation import validate_rules, validate_variants

__all__ = ["import_unleash", "unleash_context", "translate_regex", "segment_key"]

NEVER = {"type": "any", "rules": []}  # matches nobody
ALWAYS = {"type": "all", "rules": []}  # matches everybody

_TOP_LEVEL = ("userId", "sessionId", "remoteAddress", "environment", "appName", "currentTime")
_STRING_OPERATORS = {
    "STR_CONTAINS": "contains",
    "STR_STARTS_WITH": "starts_with",
    "STR_ENDS_WITH": "ends_with",
}
_NUMBER_OPERATORS = {"NUM_GT": "gt", "NUM_GTE": "gte", "NUM_LT": "lt", "NUM_LTE": "lte"}
_DATE_OPERATORS = {"DATE_AFTER": "after", "DATE_BEFORE": "before"}
_STICKINESS_FIELDS = {"default": "default", "random": "random"}
_DIGITS = re.compile(r"[0-9]{1,12}")


class _Invalid(Exception):
    """A constraint Unleash evaluates to false whatever its inversion (bad operator or value)."""


def _list(value):
    """A document field that should be a list: itself, or [] when it is anything else."""
    return value if isinstance(value, list) else []


def segment_key(segment_id):
    """The Flagsite segment key of an Unleash segment id."""
    return f"unleash-segment-{segment_id}"


def unleash_context(context):
    """(user_id, flat context) from an Unleash context object."""
    if not isinstance(context, dict):
        return None, {}
    flat = {}
    properties = context.get("properties")
    if isinstance(properties, dict):
        flat.update(properties)
    for key, value in context.items():
        if key != "properties" and value is not None:
            flat[key] = value
    user_id = flat.get("userId")
    return (None if user_id is None else str(user_id)), flat


# ---- constraints ------------------------------------------------------------------------------

def _values(constraint):
    values = constraint.get("values")
    if values is None and constraint.get("value") is not None:
        values = [constraint["value"]]
    if not isinstance(values, list):
        return []
    return [str(value) for value in values if value is not None]


def _value(constraint):
    value = constraint.get("value")
    if value is None:
        values = constraint.get("values")
        if isinstance(values, list) and values:
            value = values[0]
    return value


def _number(value):
    if isinstance(value, bool):
        raise _Invalid("not a number")
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _Invalid(f"{value!r} is not a number") from None
    else:
        raise _Invalid(f"{value!r} is not a number")
    try:
        finite = math.isfinite(number)
    except OverflowError:
        finite = False
    if not finite:
        raise _Invalid(f"{value!r} is not a finite number")
    return int(number) if float(number).is_integer() and abs(number) < 2**53 else float(number)


def _custom(field, operator, value=None, case_insensitive=False):
    rule = {"type": "custom", "field": field, "operator": operator}
    if value is not None:
        rule["value"] = value
    if case_insensitive:
        rule["caseInsensitive"] = True
    return rule


def _constraint_rule(constraint, warn):
    """One Unleash constraint as one Flagsite rule."""
    if not isinstance(constraint, dict):
        warn("a constraint that is not an object never matches")
        return NEVER
    field = constraint.get("contextName")
    operator = constraint.get("operator")
    case_insensitive = bool(constraint.get("caseInsensitive"))
    if not isinstance(field, str) or not field:
        warn("a constraint without contextName never matches")
        return NEVER
    try:
        rule = _positive_rule(field, operator, constraint, case_insensitive, warn)
    except _Invalid as problem:
        warn(f"constraint {operator} on {field!r} never matches: {problem}")
        return NEVER
    if constraint.get("inverted"):
        return {"type": "not", "rule": rule}
    return rule


def _positive_rule(field, operator, constraint, case_insensitive, warn):
    if operator in ("IN", "NOT_IN"):
        values = _values(constraint)
        if not values:
            return NEVER if operator == "IN" else ALWAYS
        return _custom(field, "in" if operator == "IN" else "not_in", values)
    if operator in _STRING_OPERATORS:
        values = _values(constraint)
        if not values:
            return NEVER
        return _custom(field, _STRING_OPERATORS[operator], values, case_insensitive)
    if operator == "NUM_EQ":
        number = _number(_value(constraint))
        return {"type": "all", "rules": [_custom(field, "gte", number), _custom(field, "lte", number)]}
    if operator in _NUMBER_OPERATORS:
        return _custom(field, _NUMBER_OPERATORS[operator], _number(_value(constraint)))
    if operator in _DATE_OPERATORS:
        value = _value(constraint)
        if not isinstance(value, str) or parse_datetime(value.strip()) is None:
            raise _Invalid(f"{value!r} is not an ISO-8601 date")
        return _custom(field, _DATE_OPERATORS[operator], value.strip())
    if operator in ("SEMVER_EQ", "SEMVER_GT", "SEMVER_LT", "SEMVER_GTE", "SEMVER_LTE"):
        value = _value(constraint)
        # Unleash refuses a leading "v" (and anything that is not SemVer 2.0) in the constraint.
        if not isinstance(value, str) or value[:1] in ("v", "V") or parse_semver(value.strip()) is None:
            raise _Invalid(f"{value!r} is not a semantic version")
        value = value.strip()
        if operator == "SEMVER_GTE":
            return {"type": "any", "rules": [_custom(field, "semver_gt", value), _custom(field, "semver_eq", value)]}
        if operator == "SEMVER_LTE":
            return {"type": "any", "rules": [_custom(field, "semver_lt", value), _custom(field, "semver_eq", value)]}
        return _custom(field, operator.lower(), value)
    if operator == "REGEX":
        value = _value(constraint)
        pattern = translate_regex(value) if isinstance(value, str) else None
        if pattern is None:
            # Unleash treats an invalid pattern as a constraint that is false (inversion applies).
            warn(f"REGEX {value!r} on {field!r} is not a valid RE2 expression: it never matches")
            return NEVER
        problem = check_regex(pattern)
        if problem:
            warn(f"REGEX on {field!r}: the translated pattern {pattern!r} {problem}; "
                 "the rule validator will refuse it")
        return _custom(field, "matches", pattern, case_insensitive)
    if operator == "IN_CIDR":
        blocks = _networks(_values(constraint), warn)
        return _custom(field, "in_cidr", blocks) if blocks else NEVER
    raise _Invalid(f"unknown operator {operator!r}")


def _networks(entries, warn):
    valid = []
    for entry in entries:
        entry = entry.strip()
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            warn(f"ignored {entry!r}: not an IP address or CIDR block")
            continue
        valid.append(entry)
    return valid


# ---- strategies -------------------------------------------------------------------------------

def _params(strategy):
    params = strategy.get("parameters")
    return params if isinstance(params, dict) else {}


def _percent(value):
    """A whole percentage 0-100 as Unleash parses it (digits only), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        return None
    return max(0, min(100, number))


def _stickiness_field(stickiness):
    if not isinstance(stickiness, str) or not stickiness:
        return "default"
    return _STICKINESS_FIELDS.get(stickiness, stickiness)


def _split(text):
    if not isinstance(text, str):
        return []
    return [item.strip() for item in text.split(",") if item.strip()]


def _strategy_rule(strategy, feature_name, warn):
    """The strategy itself (without its constraints) as a rule."""
    name = strategy.get("name")
    params = _params(strategy)
    if name == "default":
        return ALWAYS
    if name == "userWithId":
        users = _split(params.get("userIds"))
        return {"type": "user", "operator": "in", "value": users} if users else NEVER
    if name in ("gradualRolloutUserId", "gradualRolloutSessionId"):
        percent = _percent(params.get("percentage"))
        group = params.get("groupId")
        if percent is None or not isinstance(group, str):
            warn(f"{name} needs a whole percentage and a groupId: it never matches")
            return NEVER
        field = "userId" if name == "gradualRolloutUserId" else "sessionId"
        return {"type": "percentage", "operator": "less_than", "value": percent, "field": field, "salt": group}
    if name == "gradualRolloutRandom":
        percent = _percent(params.get("percentage"))
        if percent is None:
            warn(f"{name} needs a whole percentage: it never matches")
            return NEVER
        return {"type": "percentage", "operator": "less_than", "value": percent, "field": "random"}
    if name == "flexibleRollout":
        percent = _percent(params.get("rollout"))
        if percent is None:
            warn("flexibleRollout needs a whole rollout percentage: it never matches")
            return NEVER
        group = params.get("groupId")
        return {
            "type": "percentage", "operator": "less_than", "value": percent,
            "field": _stickiness_field(params.get("stickiness")),
            "salt": group if isinstance(group, str) and group else feature_name,
        }
    if name == "remoteAddress":
        blocks = _networks(_split(params.get("IPs")), warn)
        return _custom("remoteAddress", "in_cidr", blocks) if blocks else NEVER
    if name == "applicationHostname":
        hosts = _split(params.get("hostNames"))
        warn("applicationHostname compares context.hostname (the evaluating host is not the client's)")
        return _custom("hostname", "in", hosts, True) if hosts else NEVER
    warn(f"unknown strategy {name!r} never matches")
    return NEVER


def _variant(variant, with_overrides=True):
    state = {"key": str(variant.get("name")), "weight": _weight(variant.get("weight"))}
    payload = variant.get("payload")
    state["value"] = dict(payload) if isinstance(payload, dict) else None
    overrides = variant.get("overrides") if with_overrides else None
    if isinstance(overrides, list) and overrides:
        state["overrides"] = [
            {"field": override.get("contextName"), "values": [str(v) for v in _list(override.get("values"))]}
            for override in overrides
            if isinstance(override, dict) and isinstance(override.get("contextName"), str)
        ]
    return state


def _weight(weight):
    if isinstance(weight, bool):
        return 0
    if isinstance(weight, int) and weight > 0:
        return weight
    if isinstance(weight, float) and 0 < weight < 2**53:
        return int(weight)
    if isinstance(weight, str) and _DIGITS.fullmatch(weight.strip()):
        return int(weight.strip())
    return 0


def _strategy(strategy, feature_name, segments, warn):
    """One strategy as {"type": "all", ...}, carrying its variants when it has some."""
    parts = [_constraint_rule(constraint, warn) for constraint in _list(strategy.get("constraints"))]
    segment_ids = _list(strategy.get("segments"))
    if segment_ids:
        missing = [sid for sid in segment_ids if segment_key(sid) not in segments]
        if missing:
            warn(f"strategy refers to missing segment(s) {missing}: it never matches")
            return dict(NEVER)
        parts.append({"type": "segment", "operator": "in", "value": [segment_key(sid) for sid in segment_ids]})
    parts.append(_strategy_rule(strategy, feature_name, warn))
    rule = {"type": "all", "rules": parts}
    variants = strategy.get("variants")
    if isinstance(variants, list) and variants:
        params = _params(strategy)
        group = params.get("groupId")
        rule["variants"] = [_variant(v, with_overrides=False) for v in variants if isinstance(v, dict)]
        rule["salt"] = group if isinstance(group, str) and group else feature_name
        stickiness = params.get("stickiness")
        rule["stickiness"] = stickiness if isinstance(stickiness, str) and stickiness else "default"
    return rule


# ---- dependencies -----------------------------------------------------------------------------

def _variant_names(feature):
    names = []
    for variant in _list(feature.get("variants")):
        if isinstance(variant, dict) and variant.get("name") is not None:
            names.append(str(variant["name"]))
    for strategy in _list(feature.get("strategies")):
        if isinstance(strategy, dict):
            for variant in _list(strategy.get("variants")):
                if isinstance(variant, dict) and variant.get("name") is not None:
                    names.append(str(variant["name"]))
    return list(dict.fromkeys(names))


def _dependency_rule(dependency, features, warn):
    parent_name = dependency.get("feature") if isinstance(dependency, dict) else None
    parent = features.get(parent_name) if isinstance(parent_name, str) else None
    if parent is None:
        warn(f"depends on missing feature {parent_name!r}: never enabled")
        return NEVER
    if parent.get("dependencies"):
        warn(f"depends on {parent_name!r}, which has its own parents (Unleash allows one level): "
             "never enabled")
        return NEVER
    if dependency.get("enabled") is False:
        return {"type": "flag", "field": parent_name, "operator": "disabled"}
    enabled = {"type": "flag", "field": parent_name, "operator": "enabled"}
    wanted = [str(name) for name in _list(dependency.get("variants")) if name is not None]
    possible = _variant_names(parent)
    if not wanted or not possible:
        return enabled
    # Unleash: satisfied when the parent is on and its variant is one of `wanted`, or when the
    # parent resolves no variant at all (Flagsite: variant null, i.e. none of its variant keys).
    return {"type": "all", "rules": [enabled, {"type": "any", "rules": [
        {"type": "flag", "field": parent_name, "operator": "variant_in", "value": wanted},
        {"type": "not", "rule": {"type": "flag", "field": parent_name, "operator": "variant_in",
                                 "value": possible}},
    ]}]}


# ---- the document -----------------------------------------------------------------------------

def import_unleash(document):
    """Flagsite flag states and segments from an Unleash client features document."""
    document = document if isinstance(document, dict) else {}
    warnings = []
    segments = {}
    for segment in _list(document.get("segments")):
        if not isinstance(segment, dict) or segment.get("id") is None:
            continue
        key = segment_key(segment["id"])

        def warn_segment(text, key=key):
            warnings.append(f"segment {key}: {text}")

        segments[key] = [_constraint_rule(c, warn_segment) for c in _list(segment.get("constraints"))]

    features = {}
    for feature in _list(document.get("features")):
        if isinstance(feature, dict) and isinstance(feature.get("name"), str):
            features[feature["name"]] = feature

    flags = []
    for name, feature in features.items():
        def warn(text, name=name):
            warnings.append(f"feature {name!r}: {text}")

        rules = [_dependency_rule(dep, features, warn) for dep in _list(feature.get("dependencies"))]
        raw_strategies = [s for s in _list(feature.get("strategies")) if isinstance(s, dict)]
        active = [s for s in raw_strategies if not s.get("disabled")]
        if raw_strategies:
            # Unleash never evaluates disabled strategies; a flag whose strategies are all disabled is off.
            rules.append({"type": "any", "rules": [_strategy(s, name, segments, warn) for s in active]})

        variants = [_variant(v) for v in _list(feature.get("variants")) if isinstance(v, dict)]
        has_strategy_variants = bool(raw_strategies) and any(rule.get("variants") for rule in rules[-1]["rules"])
        state = {
            "key": name,
            "kind": "multivariate" if variants or has_strategy_variants else "boolean",
            "enabled": bool(feature.get("enabled")),
            "killed": False,
            "rules": rules,
        }
        if variants:
            state["variants"] = variants
            first = next(v for v in _list(feature.get("variants")) if isinstance(v, dict))
            stickiness = first.get("stickiness")  # Unleash: the first variant's stickiness for all
            state["stickiness"] = stickiness if isinstance(stickiness, str) and stickiness else "default"
        for path, message in validate_variants(variants) + validate_rules(rules, segments=segments):
            warn(f"{path}: {message}")
        flags.append(state)
    return {"flags": flags, "segments": segments, "warnings": warnings}


# ---- RE2 -> Python regular expressions ------------------------------------------------------------

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_FLAGS = re.compile(r"\(\?([imsxU]*)(?:-([imsxU]*))?([:)])")
_GROUP_NAME = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")


class _Unsupported(Exception):
    pass


def translate_regex(pattern):
    """A Python pattern matching what the RE2-style pattern matches (Unleash evaluates REGEX with
    Rust's regex crate, RE2 semantics), or None when it would refuse it (lookaround,
    backreferences, invalid syntax).

    Handles: flags set mid-pattern (``^(?i)abc$``) as scoped groups, POSIX classes
    (``[[:alpha:]]``), ``$`` / ``\\z`` meaning the very end of the text outside multi-line mode,
    repeated repetitions (``a**``), ``\\x{...}`` and ``(?<name>...)``. Refused (None), because
    Python cannot express them exactly or Unleash's evaluator refuses them: Unicode classes
    (``\\pL``), nested classes and class set operations, the ungreedy flag ``U``, ``\\Q...\\E``,
    braces that are not a repetition.
    """
    if not isinstance(pattern, str) or len(pattern) > 4096:
        return None
    try:
        alternatives, _ = _parse(pattern, 0, top=True)
        translated = _emit(alternatives, multiline=False)
        re.compile(translated)
    except (_Unsupported, re.error, IndexError, ValueError, OverflowError, RecursionError):
        return None
    return translated


def _parse(p, i, top=False):
    """Alternatives of the group starting at i: [[item, ...], ...], and the index after it."""
    alternatives = [[]]
    previous_quantifier = False
    while i < len(p):
        ch = p[i]
        if ch == ")":
            if top:
                raise _Unsupported("unbalanced )")
            return alternatives, i + 1
        if ch == "|":
            alternatives.append([])
            i += 1
            previous_quantifier = False
            continue
        items = alternatives[-1]
        if ch == "\\":
            text, i = _escape(p, i)
            items.append(text)
            previous_quantifier = False
            continue
        if ch == "[":
            text, i = _char_class(p, i)
            items.append(text)
            previous_quantifier = False
            continue
        if ch == "(":
            flags = _FLAGS.match(p, i)
            if flags:
                on, off, close = flags.group(1), flags.group(2) or "", flags.group(3)
                if "U" in on + off:
                    raise _Unsupported("ungreedy flag")
                if close == ")":
                    items.append(("flags", on, off))
                    i = flags.end()
                    continue
                inner, i = _parse(p, flags.end())
                items.append(("group", "(?" + on + ("-" + off if off else "") + ":", inner, on, off))
                previous_quantifier = False
                continue
            named = _GROUP_NAME.match(p, i)
            if named:
                inner, i = _parse(p, named.end())
                items.append(("group", f"(?P<{named.group(1)}>", inner, "", ""))
            elif p.startswith("(?:", i):
                inner, i = _parse(p, i + 3)
                items.append(("group", "(?:", inner, "", ""))
            elif p.startswith("(?", i):
                raise _Unsupported("lookaround, atomic groups and conditionals are not RE2")
            else:
                inner, i = _parse(p, i + 1)
                items.append(("group", "(", inner, "", ""))
            previous_quantifier = False
            continue
        if ch in "*+?{":
            if ch == "{":
                bound = re.compile(r"\{(\d+)(,(\d*))?\}").match(p, i)
                if not bound:  # the reference evaluator refuses a brace that is not a repetition
                    raise _Unsupported("{ without a valid repetition")
                text, i = bound.group(0), bound.end()
            else:
                text, i = ch, i + 1
            if previous_quantifier and text == "?" and not items[-1].endswith("?"):
                items[-1] = items[-1] + "?"  # lazy quantifier
                continue
            if previous_quantifier:
                # a** or a{2}{3}: a repetition of a repetition, as the reference evaluator reads it
                atom = items[-2:]
                del items[-2:]
                items.append(("group", "(?:", [atom], "", ""))
            items.append(text)
            previous_quantifier = True
            continue
        if ch == "$":
            items.append(("dollar",))
            i += 1
            previous_quantifier = False
            continue
        items.append(ch)
        i += 1
        previous_quantifier = False
    if not top:
        raise _Unsupported("missing )")
    return alternatives, i


def _escape(p, i):
    nxt = p[i + 1] if i + 1 < len(p) else ""
    if nxt == "":
        raise _Unsupported("trailing backslash")
    if nxt.isdigit() and nxt != "0":
        raise _Unsupported("backreferences are not RE2")
    if nxt in "pPCZQEkg":  # Unicode classes have no Python equivalent; the rest are not RE2
        raise _Unsupported(f"\\{nxt} is not supported here")
    if nxt == "z":
        return ("end",), i + 2
    if nxt == "x" and i + 2 < len(p) and p[i + 2] == "{":
        end = p.index("}", i + 3)
        return re.escape(chr(int(p[i + 3:end], 16))), end + 1
    return p[i:i + 2], i + 2


def _char_class(p, i):
    out = ["["]
    j = i + 1
    if j < len(p) and p[j] == "^":
        out.append("^")
        j += 1
    first = True
    while True:
        if j >= len(p):
            raise _Unsupported("missing ]")
        ch = p[j]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        first = False
        if ch == "[":
            end = p.find(":]", j + 2) if p.startswith("[:", j) else -1
            name = p[j + 2:end] if end > 0 else None
            if name in _POSIX_CLASSES:
                out.append(_POSIX_CLASSES[name])
                j = end + 2
                continue
            raise _Unsupported("nested or negated classes")
        if ch == "\\":
            text, j = _escape(p, j)
            if isinstance(text, tuple):
                raise _Unsupported("\\z in a class")
            out.append(text)
            continue
        if p.startswith(("&&", "--", "~~"), j):
            raise _Unsupported("class set operations")
        if ch in "&~|":  # escape so Python never reads a set operation
            out.append("\\" + ch)
        else:
            out.append(ch)
        j += 1


def _emit(alternatives, multiline):
    out = []
    pending = []  # flags set in an earlier alternative: they apply to the later ones too
    for items in alternatives:
        text, set_here, multiline_after = _emit_items(items, _apply(multiline, pending))
        for on, off in reversed(pending):
            text = f"(?{on}{'-' + off if off else ''}:{text})"
        out.append(text)
        pending = pending + set_here
    return "|".join(out)


def _apply(multiline, flag_sets):
    for on, off in flag_sets:
        if "m" in on:
            multiline = True
        if "m" in off:
            multiline = False
    return multiline


def _emit_items(items, multiline):
    out = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            out.append(item)
        elif item[0] == "dollar":
            out.append("$" if multiline else r"\Z")
        elif item[0] == "end":
            out.append(r"\Z")
        elif item[0] == "group":
            _, opening, inner, on, off = item
            out.append(opening + _emit(inner, _apply(multiline, [(on, off)])) + ")")
        elif item[0] == "flags":
            _, on, off = item
            rest, set_later, after = _emit_items(items[index + 1:], _apply(multiline, [(on, off)]))
            out.append(f"(?{on}{'-' + off if off else ''}:{rest})")
            return "".join(out), [(on, off)] + set_later, after
    return "".join(out), [], multiline
