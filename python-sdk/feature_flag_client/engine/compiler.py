"""Compile flag states into closures, once per configuration version.

Every rule becomes a predicate ``pred(user_id, context)`` returning a falsy value (no match), True
(match) or a ``_Plan`` (match, and this rule decides the variants). Every possible result is an
``Evaluation`` built here, so an evaluation only runs predicates and returns a prebuilt object: no
parsing, no dict walking, no allocation on the common paths.

Inputs are assumed valid (``validation.validate_rules`` refuses bad rules at write time); anything
malformed that slips through compiles to a rule that never matches rather than raising.
"""

import itertools
import math
import random
from collections import Counter
from datetime import datetime, timezone

from . import lookups
from .bucketing import VARIANT_SEED, _hash
from .model import (
    DISABLED,
    FLAG_NOT_FOUND,
    KILLED,
    RULE_MISMATCH,
    SPLIT,
    STATIC,
    TARGETING_MATCH,
    Evaluation,
)
from .operators import OPERATORS

_EMPTY = {}
USER_ID = "userId"
DEFAULT_STICKINESS = "default"  # Unleash's: userId, else sessionId, else random
RANDOM_STICKINESS = "random"  # a fresh random bucket on every evaluation (Unleash's "random")


def _never(u, c):
    return False


def _always(u, c):
    return True


def segment_rules(conditions):
    """A segment's rule list from its stored conditions (seed shorthand {"plan": "premium"} or rules)."""
    if isinstance(conditions, dict):
        return [
            {"type": "custom", "field": field, "operator": "in" if isinstance(value, list) else "equals",
             "value": value}
            for field, value in conditions.items()
        ]
    return list(conditions or [])


def _sticky_id(field):
    """A function (u, c) -> the id to hash for a stickiness/bucketing field, or None."""
    if field == USER_ID:
        return lambda u, c: u
    if field == RANDOM_STICKINESS:
        return lambda u, c: None  # no sticky id: callers fall back to random
    if field == DEFAULT_STICKINESS:
        def default_id(u, c):
            if u is not None:
                return u
            session = c.get("sessionId")
            return _text(session) if session is not None else None

        return default_id

    def field_id(u, c):
        value = c.get(field)
        return _text(value) if value is not None else None

    return field_id


def _text(value):
    """How an id is written before hashing (JSON-style for numbers and booleans)."""
    if value.__class__ is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def country_reader():
    """(c) -> the country a geo rule sees: context.country, else the country of context.ip; None
    when neither says, False when country is not a string. Shared with explain (explain.py)."""
    country_of = lookups.country_of

    def country(c):
        value = c.get("country")
        if value is None:
            ip = c.get("ip")
            if ip.__class__ is not str:
                return None
            return country_of(ip.strip())
        return value if value.__class__ is str else False

    return country


def device_reader():
    """(c) -> the device class a device rule sees: context.device (lower-cased), else classified
    from context.userAgent; None when neither says, False when device is not a string."""
    device_of = lookups.device_of

    def device(c):
        value = c.get("device")
        if value is None:
            agent = c.get("userAgent")
            return device_of(agent) if agent.__class__ is str else None
        return value.lower() if value.__class__ is str else False

    return device


class _Plan:
    """Variant assignment for one flag or one rule: overrides, then a weighted sticky hash."""

    __slots__ = ("choose", "results")

    def __init__(self, flag_key, variants, salt, stickiness, reason, environment, version, new_result):
        prefix = f"{salt}:"
        base_split = reason == SPLIT
        weighted = [v for v in variants if v.get("weight", 0) > 0]
        split = base_split or len(weighted) > 1
        results = {}
        table = []
        cumulative = 0
        for variant in weighted:
            result = new_result(
                flag_key, True, variant["key"], variant.get("value"), SPLIT if split else reason,
                None, environment, version,
            )
            results[variant["key"]] = result
            cumulative += variant["weight"]
            table.append((cumulative, result))
        total = cumulative
        overrides = []
        for variant in variants:
            for override in variant.get("overrides") or ():
                result = new_result(
                    flag_key, True, variant["key"], variant.get("value"), TARGETING_MATCH, None,
                    environment, version,
                )
                values = frozenset(str(value) for value in override.get("values") or ())
                overrides.append((_sticky_id(override.get("field", USER_ID)), values, result))
        self.results = results
        sticky = _sticky_id(stickiness)
        only = table[0][1] if len(table) == 1 else None

        def choose(u, c):
            for identify, values, result in overrides:
                if identify(u, c) in values:
                    return result
            if only is not None:
                return only
            identifier = sticky(u, c)
            if identifier is None:
                identifier = str(random.random())  # Unleash: no sticky id means a random variant
            position = _hash(prefix + identifier, VARIANT_SEED, False) % total + 1
            for bound, result in table:
                if position <= bound:
                    return result
            return table[-1][1]

        self.choose = choose if table or overrides else None


class _FlagCompiler:
    """Compiles the rules of one flag inside one snapshot."""

    def __init__(self, state, snapshot):
        self.key = state["key"]
        self.salt = state.get("salt") or self.key
        self.stickiness = state.get("stickiness") or USER_ID
        self.snapshot = snapshot
        self.version = state.get("version", snapshot.version)

    # ---- rules ---------------------------------------------------------------------------

    def rule(self, rule, allow_plans=True):
        """Predicate for a rule, plus whether it may return a plan and whether it splits."""
        try:
            kind = rule["type"]
            build = getattr(self, "_" + kind)
        except (KeyError, TypeError, AttributeError):
            return _never, False
        try:
            pred, carries = build(rule, allow_plans)
        except Exception:  # malformed rule that bypassed validation: it matches nobody
            return _never, False
        variants = rule.get("variants") if allow_plans else None
        if variants:
            plan = self.plan(variants, rule.get("salt") or self.salt,
                             rule.get("stickiness") or self.stickiness)
            inner = pred

            def pred(u, c):
                return plan if inner(u, c) else False

            carries = True
        return pred, carries

    def _all(self, rule, allow_plans):
        compiled = [self.rule(child, allow_plans) for child in rule.get("rules") or ()]
        preds = tuple(pred for pred, _ in compiled)
        if not any(carries for _, carries in compiled):
            if not preds:
                return _always, False
            if len(preds) == 1:
                return preds[0], False

            def all_(u, c):
                for pred in preds:
                    if not pred(u, c):
                        return False
                return True

            return all_, False

        def all_with_plan(u, c):
            plan = True
            for pred in preds:
                matched = pred(u, c)
                if not matched:
                    return False
                if plan is True and matched is not True:
                    plan = matched
            return plan

        return all_with_plan, True

    def _any(self, rule, allow_plans):
        compiled = [self.rule(child, allow_plans) for child in rule.get("rules") or ()]
        preds = tuple(pred for pred, _ in compiled)

        def any_(u, c):
            for pred in preds:
                matched = pred(u, c)
                if matched:
                    return matched
            return False

        return (any_ if preds else _never), any(carries for _, carries in compiled)

    def _not(self, rule, allow_plans):
        inner, _ = self.rule(rule["rule"], False)
        return (lambda u, c: not inner(u, c)), False

    def _geo(self, rule, allow_plans):
        lookups.ensure_geo()
        codes = frozenset(code.upper() for code in rule["value"])
        negated = rule["operator"] == "not_in"
        country = country_reader()

        if negated:
            def not_in_countries(u, c):
                value = country(c)
                if value is None:
                    return True
                return value is not False and value.upper() not in codes

            return not_in_countries, False

        def in_countries(u, c):
            value = country(c)
            return bool(value) and (value in codes or value.upper() in codes)

        return in_countries, False

    def _device(self, rule, allow_plans):
        operator = rule["operator"]
        value = rule["value"]
        devices = frozenset(d.lower() for d in ([value] if operator in ("is", "is_not") else value))
        negated = operator in ("is_not", "not_in")
        lookups.ensure_device()
        device = device_reader()

        if negated:
            def not_device(u, c):
                value = device(c)
                return value is None or (value is not False and value not in devices)

            return not_device, False
        def is_device(u, c):
            value = device(c)
            return bool(value) and value in devices

        return is_device, False

    def _percentage(self, rule, allow_plans):
        percent = rule["value"]
        threshold = math.floor(percent)  # bucket (1..100) <= N  <=>  hash % 100 < floor(N)
        prefix = f"{rule.get('salt') or self.salt}:"
        field = rule.get("field") or USER_ID
        if field == USER_ID:
            def rollout(u, c):
                return u is not None and _hash(prefix + u, 0, False) % 100 < threshold

            rollout.rollout = (prefix, threshold)
            return rollout, False
        identify = _sticky_id(field)
        randomly = field == DEFAULT_STICKINESS or field == RANDOM_STICKINESS

        def rollout_by_field(u, c):
            identifier = identify(u, c)
            if identifier is None:
                return randomly and random.randint(1, 100) <= percent
            return _hash(prefix + identifier, 0, False) % 100 < threshold

        return rollout_by_field, False

    def _user(self, rule, allow_plans):
        users = frozenset(str(user) for user in rule["value"])
        if rule["operator"] == "not_in":
            return (lambda u, c: u is None or u not in users), False
        return (lambda u, c: u is not None and u in users), False

    def _custom(self, rule, allow_plans):
        field = rule["field"]
        name = rule["operator"]
        operator = OPERATORS[name]
        value = rule.get("value")
        test = operator.build(value, bool(rule.get("caseInsensitive")))
        if field == USER_ID:
            get = lambda u, c: u  # noqa: E731
        elif field == "currentTime" and name in ("before", "after"):
            def get(u, c):
                moment = c.get("currentTime")
                return datetime.now(timezone.utc).isoformat() if moment is None else moment
        else:
            get = None

        # Fast paths for the commonest shapes; the general form follows.
        if get is None and not rule.get("caseInsensitive"):
            if name == "equals" and value.__class__ is str:
                return (lambda u, c: c.get(field) == value), False
            if name == "in" and all(item.__class__ is str for item in value):
                members = frozenset(value)

                def in_strings(u, c):
                    v = c.get(field)
                    return v.__class__ is str and v in members

                return in_strings, False
        if get is None:
            if operator.negated:
                def negated(u, c):
                    v = c.get(field)
                    return v is None or test(v) is False

                return negated, False

            def positive(u, c):
                v = c.get(field)
                return v is not None and test(v) is True

            return positive, False
        if operator.negated:
            return (lambda u, c: (v := get(u, c)) is None or test(v) is False), False
        return (lambda u, c: (v := get(u, c)) is not None and test(v) is True), False

    def _segment(self, rule, allow_plans):
        preds = tuple(self.snapshot.segment_predicate(key) for key in rule["value"])
        if rule["operator"] == "not_in":
            def in_no_segment(u, c):
                for pred in preds:
                    if pred(u, c):
                        return False
                return True

            return in_no_segment, False

        def in_every_segment(u, c):
            for pred in preds:
                if not pred(u, c):
                    return False
            return True

        return in_every_segment, False

    def _flag(self, rule, allow_plans):
        parent = rule["field"]
        operator = rule["operator"]
        if (self.key, parent) in self.snapshot.broken_prerequisites:
            return _never, False
        table = self.snapshot.table  # filled with every flag before any evaluation runs

        def parent_result(u, c):
            evaluate = table.get(parent)
            if evaluate is None or evaluate.__class__ is Evaluation:
                return evaluate
            return evaluate(u, c)

        if operator == "enabled":
            return (lambda u, c: (r := parent_result(u, c)) is not None and r.enabled), False
        if operator == "disabled":
            return (lambda u, c: (r := parent_result(u, c)) is not None and not r.enabled), False
        variants = frozenset(rule.get("value") or ())
        return (
            lambda u, c: (r := parent_result(u, c)) is not None and r.enabled and r.variant in variants
        ), False

    # ---- the flag --------------------------------------------------------------------------

    def plan(self, variants, salt, stickiness):
        """Variants carried by a rule: chosen when that rule decides the match."""
        return _Plan(self.key, variants, salt, stickiness, TARGETING_MATCH, self.snapshot.environment,
                     self.version, self.snapshot.new_result)

    def flag(self, state):
        key = self.key
        environment = self.snapshot.environment
        version = self.version
        multivariate = state.get("kind") == "multivariate"
        off_variant, off_value = off_variant_of(state) if multivariate else (None, False)

        def result(enabled, reason, rule=None, variant=None, value=None):
            if value is None and not multivariate:
                value = enabled
            return self.snapshot.new_result(key, enabled, variant, value, reason, rule, environment, version)

        # A flag whose answer cannot depend on the user compiles to the answer itself.
        if state.get("killed"):
            return result(False, KILLED, value=off_value, variant=off_variant)
        if not state.get("enabled"):
            return result(False, DISABLED, value=off_value, variant=off_variant)

        rules = state.get("rules") or []
        checks = []
        carries = False
        splits = False
        for index, rule in enumerate(rules):
            pred, rule_carries = self.rule(rule)
            carries = carries or rule_carries
            splits = splits or (isinstance(rule, dict) and rule.get("type") == "percentage")
            checks.append((pred, result(False, RULE_MISMATCH, index, value=off_value, variant=off_variant)))
        reason = STATIC if not rules else SPLIT if splits else TARGETING_MATCH

        on = result(True, reason, value=None if multivariate else True)
        flag_plan = None
        if state.get("variants"):
            flag_plan = _Plan(key, state["variants"], self.salt, self.stickiness, reason,
                              environment, version, self.snapshot.new_result)
        choose = flag_plan.choose if flag_plan is not None else None

        if not checks:
            return on if choose is None else choose
        if len(checks) == 1 and not carries:
            (pred, miss), = checks
            rollout = getattr(pred, "rollout", None)
            if rollout is not None and choose is None:
                # The commonest targeted flag, a plain rollout by user id: hash inline.
                prefix, threshold = rollout
                return lambda u, c: (
                    on if u is not None and _hash(prefix + u, 0, False) % 100 < threshold else miss
                )
            if choose is None:
                return lambda u, c: on if pred(u, c) else miss
            return lambda u, c: choose(u, c) if pred(u, c) else miss

        checks = tuple(checks)
        if not carries:
            def evaluate(u, c):
                for pred, miss in checks:
                    if not pred(u, c):
                        return miss
                return choose(u, c) if choose is not None else on

            return evaluate

        def evaluate_with_plans(u, c):
            decided = None
            for pred, miss in checks:
                matched = pred(u, c)
                if not matched:
                    return miss
                if decided is None and matched is not True:
                    decided = matched
            if decided is not None and decided.choose is not None:
                return decided.choose(u, c)
            return choose(u, c) if choose is not None else on

        return evaluate_with_plans


def off_variant_of(state):
    """(variant key, value) a multivariate flag serves while off (killed, disabled, or a rule did
    not match): its state's ``offVariant`` when that names one of its variants, else (None, None)."""
    name = state.get("offVariant")
    if name:
        for variant in state.get("variants") or ():
            if isinstance(variant, dict) and variant.get("key") == name:
                return name, variant.get("value")
    return None, None


def iter_rules(rules):
    """Every rule object in a rule list, nested ones (all/any/not) included; anything else skipped."""
    stack = list(rules) if isinstance(rules, list) else []
    while stack:
        rule = stack.pop()
        if not isinstance(rule, dict):
            continue
        yield rule
        if isinstance(rule.get("rules"), list):
            stack.extend(rule["rules"])
        if isinstance(rule.get("rule"), dict):
            stack.append(rule["rule"])


def prerequisite_refs(rules):
    """Flag keys referenced by prerequisite rules anywhere in a rule tree."""
    return {rule["field"] for rule in iter_rules(rules)
            if rule.get("type") == "flag" and isinstance(rule.get("field"), str)}


def segment_refs(rules):
    """Segment keys referenced anywhere in a rule tree."""
    return {key for rule in iter_rules(rules)
            if rule.get("type") == "segment" and isinstance(rule.get("value"), list)
            for key in rule["value"] if isinstance(key, str)}


def _cyclic_edges(graph):
    """(flag, parent) edges that lie on a prerequisite cycle."""
    def reaches(start, target):
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            if node == target:
                return True
            if node not in seen:
                seen.add(node)
                stack.extend(graph.get(node, ()))
        return False

    return {(flag, parent) for flag, parents in graph.items() for parent in parents if reaches(parent, flag)}


class CompiledFlag:
    """One compiled flag: ``evaluate(user_id, context)``."""

    __slots__ = ("key", "state", "evaluate_compiled")  # evaluate_compiled: a function or a constant result

    def __init__(self, key, state, evaluate_compiled):
        self.key = key
        self.state = state
        self.evaluate_compiled = evaluate_compiled

    def evaluate(self, user_id=None, context=None):
        if self.evaluate_compiled.__class__ is Evaluation:
            return self.evaluate_compiled
        context, user_id = _normalise(user_id, context)
        return self.evaluate_compiled(user_id, context)


def _normalise(user_id, context):
    if context.__class__ is not dict:
        context = context if isinstance(context, dict) else _EMPTY
    if user_id.__class__ is not str:
        if user_id is None:
            user_id = context.get(USER_ID)
        user_id = _text(user_id) if user_id is not None else None
    return context, user_id


def _exposing(compiled, on_variant):
    """A compiled flag with variants that also hands each (on) variant it gives a known user to
    on_variant."""
    if compiled.__class__ is Evaluation:
        if compiled.variant is None or not compiled.enabled:
            return compiled
        constant = compiled
        compiled = lambda user_id, context: constant  # noqa: E731 (same shape as a compiled flag)

    def evaluate(user_id, context):
        result = compiled(user_id, context)
        if result.variant is not None and result.enabled and user_id is not None:
            on_variant(result, user_id)
        return result

    return evaluate


class Snapshot:
    """Every flag of one environment at one version, compiled. ``evaluate(key, user_id, context)``."""

    MAX_COUNTED_UNKNOWN_FLAGS = 1000

    def __init__(self, flags=(), segments=None, environment=None, version=None, counting=False, on_variant=None):
        self.environment = environment
        self.version = version
        self.counting = counting
        self.on_variant = on_variant
        self.results = []  # every Evaluation this snapshot can return (prebuilt at compile time)
        self.table = {}
        self.flags = {}
        self.segments = {key: segment_rules(rules) for key, rules in (segments or {}).items()}
        self._segment_predicates = {}
        self._compiling_segments = set()
        states = [state for state in flags if isinstance(state, dict) and "key" in state]
        graph = {state["key"]: prerequisite_refs(state.get("rules")) for state in states}
        self.broken_prerequisites = _cyclic_edges(graph)
        for state in states:
            evaluate = _FlagCompiler(state, self).flag(state)  # a function, or an Evaluation if constant
            self.table[state["key"]] = evaluate
            self.flags[state["key"]] = CompiledFlag(state["key"], state, evaluate)
        self.evaluate = self._make_evaluate()

    def new_result(self, *fields):
        result = Evaluation(*fields)
        if self.counting:
            result.hits = itertools.count()
        self.results.append(result)
        return result

    def hit_counts(self):
        """Evaluations so far per (flag_id, variant, enabled), for a counting snapshot."""
        counts = Counter()
        for result in self.results:
            if result.hits is not None:
                hits = int(repr(result.hits)[6:-1])  # "count(N)": the next value is the number of hits
                if hits:
                    counts[(result.flag_id, result.variant, result.enabled)] += hits
        return counts

    def segment_predicate(self, key):
        """Compiled predicate of a segment (shared by every flag); unknown or cyclic: matches nobody."""
        pred = self._segment_predicates.get(key)
        if pred is not None:
            return pred
        rules = self.segments.get(key)
        if rules is None or key in self._compiling_segments:
            return _never
        self._compiling_segments.add(key)
        try:
            compiler = _FlagCompiler({"key": f"segment:{key}"}, self)
            pred, _ = compiler.rule({"type": "all", "rules": rules}, allow_plans=False)
        finally:
            self._compiling_segments.discard(key)
        self._segment_predicates[key] = pred
        return pred

    def _make_evaluate(self):
        table = self.table
        if self.counting and self.on_variant is not None:
            # only flags with variants can hand one out: the others (boolean flags) pay nothing
            table = {key: _exposing(compiled, self.on_variant) if self.flags[key].state.get("variants") else compiled
                     for key, compiled in table.items()}
        environment = self.environment
        version = self.version
        normalise = _normalise

        def evaluate(flag_id, user_id=None, context=None):
            """Evaluation of one flag for one user; unknown flags answer FLAG_NOT_FOUND."""
            compiled = table.get(flag_id)
            if compiled is None:
                return Evaluation(flag_id, False, None, None, FLAG_NOT_FOUND, None, environment, version)
            if compiled.__class__ is Evaluation:
                return compiled
            if context.__class__ is not dict or user_id.__class__ is not str:
                context, user_id = normalise(user_id, context)
            return compiled(user_id, context)

        if not self.counting:
            return evaluate

        unknown = {}

        def evaluate_counted(flag_id, user_id=None, context=None):
            """The same, counting each result: next() on a C counter is atomic and ~30 ns."""
            compiled = table.get(flag_id)
            if compiled is None:
                result = unknown.get(flag_id)
                if result is None:
                    if len(unknown) >= self.MAX_COUNTED_UNKNOWN_FLAGS:
                        return evaluate(flag_id)
                    result = unknown.setdefault(flag_id, self.new_result(
                        flag_id, False, None, None, FLAG_NOT_FOUND, None, environment, version))
            elif compiled.__class__ is Evaluation:
                result = compiled
            else:
                if context.__class__ is not dict or user_id.__class__ is not str:
                    context, user_id = normalise(user_id, context)
                result = compiled(user_id, context)
            next(result.hits)
            return result

        return evaluate_counted

    def explain(self, flag_id, user_id=None, context=None):
        """Why this flag answers what it does for this user: an ``explain.Explanation`` (the same
        result as evaluate, the deciding rule's path and every rule tried). Off the hot path."""
        from .explain import explain

        return explain(self, flag_id, user_id, context)

    def evaluate_all(self, user_id=None, context=None, flag_ids=None):
        """Evaluations of the listed flags (all flags when None), in order."""
        keys = self.table.keys() if flag_ids is None else flag_ids
        evaluate = self.evaluate
        return [evaluate(key, user_id, context) for key in keys]

    def __contains__(self, flag_id):
        return flag_id in self.table

    def __len__(self):
        return len(self.table)


def compile_snapshot(flags=(), segments=None, environment=None, version=None, counting=False, on_variant=None,
                     experiments=None):
    """Compile every flag state of one environment (see docs/rules.md for the state format).
    counting=True counts every evaluation exactly, read with Snapshot.hit_counts(); a counting
    snapshot also calls on_variant(evaluation, user_id) for each variant it hands a known user while
    on (the SDK's local mode records exposures with it). ``experiments`` (a server payload's
    {flag: start} of running experiments) does not change any answer: accepted so that
    ``compile_snapshot(**payload)`` works; the SDK's local mode reads it for exposures."""
    return Snapshot(flags, segments, environment, version, counting, on_variant)


def compile_flag(state, segments=None, environment=None, version=None):
    """Compile a single flag (its prerequisites, if any, resolve to unknown flags)."""
    return Snapshot([state], segments, environment, version).flags[state["key"]]
