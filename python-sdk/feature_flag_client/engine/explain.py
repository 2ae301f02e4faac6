"""Why did this user get that? ``explain(snapshot, flag_key, user_id, context)``.

The normal path is not touched: an explanation compiles the one flag again with the flag's own
compiler (``compiler._FlagCompiler``), subclassed to record. Every rule it compiles becomes a node
carrying its validator path (``rules[1].rules[0]``, as in write-time errors), and every compiled
predicate is wrapped to note its verdict when called. Then the recording flag is evaluated once:
the answer comes from the same decision code as ``Snapshot.evaluate`` (same predicates, same
short-circuits, same variant plans), and the nodes that were called are exactly the rules tried.
So there is no second copy of the matching logic, and ``Snapshot.evaluate`` costs what it did
(``bench/engine.py --explain`` measures it).

What each rule looked at (the attribute and the value seen) is read with the compiler's own
readers (``country_reader``, ``device_reader``, ``_sticky_id``) and the shared bucketing utility;
it describes a verdict, it never decides one. Prerequisites are evaluated on the snapshot itself,
and segments are explained by recording their conditions too.

Explanations are for people (the management API, the SDK's ``explain``), not for the hot path:
one costs a compile of one flag, about as much as a few hundred evaluations.
"""

import math

from .bucketing import bucket
from .compiler import (
    DEFAULT_STICKINESS,
    RANDOM_STICKINESS,
    USER_ID,
    _FlagCompiler,
    _never,
    _normalise,
    _sticky_id,
    country_reader,
    device_reader,
    segment_rules,
)
from .model import DISABLED, FLAG_NOT_FOUND, KILLED, RULE_MISMATCH, SPLIT, STATIC, Evaluation

MAX_SHOWN = 10  # list values quoted in messages



def _recorded(pred, node):
    """``pred``, noting on ``node`` that it ran and what it answered."""
    def recorded(u, c):
        verdict = pred(u, c)
        node.tried = True
        node.verdict = verdict
        return verdict

    return recorded

class Explanation:
    """An evaluation plus why: the deciding rule's path and a trace of every rule tried."""

    __slots__ = ("evaluation", "deciding_rule", "rules", "summary")

    def __init__(self, evaluation, deciding_rule, rules, summary):
        self.evaluation = evaluation  # an engine Evaluation, equal to what evaluate() answers
        self.deciding_rule = deciding_rule  # "rules[1]" or None (killed, disabled, no rules, unknown)
        self.rules = rules  # [trace dict] of the top-level rules tried, nested traces under "rules"
        self.summary = summary  # one sentence

    def __getattr__(self, name):  # enabled, variant, value, reason, rule, flag_id, environment, version
        return getattr(self.evaluation, name)

    def as_dict(self):
        return {
            **self.evaluation.as_dict(),
            "decidingRule": self.deciding_rule,
            "summary": self.summary,
            "rules": self.rules,
        }

    def __repr__(self):
        return f"Explanation({self.evaluation!r}, deciding_rule={self.deciding_rule!r})"


def explain(snapshot, flag_id, user_id=None, context=None):
    """The Explanation of one flag for one user in a compiled Snapshot."""
    compiled = snapshot.flags.get(flag_id)
    if compiled is None:  # what evaluate answers, built here: evaluate would count it (counting=True)
        result = Evaluation(flag_id, False, None, None, FLAG_NOT_FOUND, None, snapshot.environment, snapshot.version)
        return Explanation(result, None, [], f"no flag {flag_id!r} in this environment")
    context, user_id = _normalise(user_id, context)
    state = compiled.state
    compiler = _RecordingCompiler(state, _Scope(snapshot))
    evaluate = compiler.flag(state)
    result = evaluate if evaluate.__class__ is Evaluation else evaluate(user_id, context)
    return compiler.explanation(result, user_id, context)


# ---- recording -------------------------------------------------------------------------------

class _Node:
    __slots__ = ("rule", "path", "children", "plan", "tried", "verdict", "segment")

    def __init__(self, rule, path, segment=None):
        self.rule = rule
        self.path = path
        self.children = []
        self.plan = None  # the _Plan this rule carries (rule-level variants)
        self.tried = False
        self.verdict = None
        self.segment = segment  # a segment's own conditions: its key


class _Scope:
    """What a _FlagCompiler reads from its snapshot, taken from the real one, except that results
    are not kept (the snapshot's result list and hit counters are the normal path's) and segment
    predicates are recorded too."""

    def __init__(self, snapshot):
        self.snapshot = snapshot
        self.environment = snapshot.environment
        self.version = snapshot.version
        self.table = snapshot.table
        self.broken_prerequisites = snapshot.broken_prerequisites
        self.segments = snapshot.segments
        self.compiler = None  # the recording compiler (set by it)
        self._compiling = set()

    def new_result(self, *fields):
        return Evaluation(*fields)

    def segment_predicate(self, key):
        """The segment's conditions compiled and recorded (as Snapshot.segment_predicate compiles
        them: all of them, no variants); unknown or cyclic: matches nobody."""
        rules = self.segments.get(key)
        if rules is None or key in self._compiling:
            return _never
        self._compiling.add(key)
        try:
            return self.compiler.segment(key, rules)
        finally:
            self._compiling.discard(key)


class _RecordingCompiler(_FlagCompiler):
    def __init__(self, state, scope):
        super().__init__(state, scope)
        self.scope = scope
        scope.compiler = self
        self.root = _Node(None, "rules")
        self._stack = [self.root]

    def _path(self, parent):
        if parent is self.root:
            return f"rules[{len(parent.children)}]"
        if parent.segment is not None:
            return f"{parent.path}.conditions[{len(parent.children)}]"
        if isinstance(parent.rule, dict) and parent.rule.get("type") == "not":
            return f"{parent.path}.rule"
        return f"{parent.path}.rules[{len(parent.children)}]"

    def rule(self, rule, allow_plans=True):
        parent = self._stack[-1]
        node = _Node(rule, self._path(parent))
        parent.children.append(node)
        self._stack.append(node)
        try:
            pred, carries = super().rule(rule, allow_plans)
        finally:
            self._stack.pop()
        return _recorded(pred, node), carries

    def plan(self, variants, salt, stickiness):
        plan = super().plan(variants, salt, stickiness)
        self._stack[-1].plan = plan  # the rule being compiled carries it
        return plan

    def segment(self, key, rules):
        """The recorded predicate of a segment's conditions (all of them, no variants, as
        Snapshot.segment_predicate compiles them), as a child of the segment rule being compiled:
        path "segments.<key>", its conditions "segments.<key>.conditions[0]"."""
        parent = self._stack[-1]
        node = _Node(None, f"segments.{key}", segment=key)
        parent.children.append(node)
        self._stack.append(node)
        try:
            pred, _ = _FlagCompiler.rule(self, {"type": "all", "rules": segment_rules(rules)}, False)
        finally:
            self._stack.pop()
        return _recorded(pred, node)

    # ---- the explanation --------------------------------------------------------------------

    def explanation(self, result, u, c):
        top = self.root.children
        reason = result.reason
        deciding = None
        if reason == KILLED:
            summary = "the flag is killed in this environment: off for everyone"
        elif reason == DISABLED:
            summary = "the flag is disabled in this environment: off for everyone"
        elif reason == STATIC:
            summary = "the flag is on with no rules: on for everyone"
        elif reason == RULE_MISMATCH:
            node = top[result.rule]
            deciding = node.path
            summary = f"{node.path} did not match: {self._message(node, u, c)}"
        elif not top:
            summary = ("variant chosen by an override" if reason != SPLIT
                       else "no rules; variant chosen by the weighted split")
        else:
            node = self._plan_owner(top, result)
            if node is None and reason == SPLIT:
                node = next((n for n in top if isinstance(n.rule, dict) and n.rule.get("type") == "percentage"),
                            None)
            if node is None:
                node = top[-1]
            deciding = node.path
            summary = (f"all {len(top)} rules matched" if len(top) > 1 else "the rule matched") + \
                f"; deciding: {node.path}"
            if node.plan is not None:
                summary += f" (its variants chose {result.variant!r})"
        rules = [self._trace(node, u, c) for node in top if node.tried]
        return Explanation(result, deciding, rules, summary)

    def _plan_owner(self, top, result):
        """The node whose rule-level variants chose the result, if one did (as evaluate_with_plans:
        the first top-level verdict that is a plan)."""
        decided = next((n.verdict for n in top if n.tried and n.verdict and n.verdict is not True), None)
        if decided is None or decided.choose is None:
            return None
        stack = list(top)
        while stack:
            node = stack.pop()
            if node.plan is decided:
                return node
            stack.extend(node.children)
        return None

    def _trace(self, node, u, c):
        if node.segment is not None:
            return {"path": node.path, "type": "segment", "segment": node.segment,
                    "matched": bool(node.verdict),
                    "message": f"segment {node.segment!r} {'matched' if node.verdict else 'did not match'}",
                    "rules": [self._trace(child, u, c) for child in node.children if child.tried]}
        rule = node.rule if isinstance(node.rule, dict) else {}
        kind = rule.get("type")
        trace = {"path": node.path, "type": kind, "operator": rule.get("operator"),
                 "matched": bool(node.verdict)}
        attribute, seen = self._seen(kind, rule, u, c)
        if attribute is not None:
            trace["attribute"] = attribute
            trace["value"] = seen
        trace["message"] = self._message(node, u, c)
        children = [self._trace(child, u, c) for child in node.children if child.tried]
        if children:
            trace["rules"] = children
        if node.plan is not None:
            trace["variants"] = True
        return trace

    # ---- what a rule looked at, in words -----------------------------------------------------

    def _seen(self, kind, rule, u, c):
        """(attribute, value seen) for a leaf rule; (None, None) for compositions."""
        try:
            if kind == "custom":
                field = rule.get("field")
                if field == USER_ID:
                    return field, u
                if field == "currentTime" and c.get("currentTime") is None and rule.get("operator") in (
                        "before", "after"):
                    return field, "now"
                return field, c.get(field)
            if kind == "user":
                return USER_ID, u
            if kind == "geo":
                attribute = "country" if c.get("country") is not None else "ip"
                return attribute, c.get(attribute)
            if kind == "device":
                attribute = "device" if c.get("device") is not None else "userAgent"
                return attribute, c.get(attribute)
            if kind == "percentage":
                field = rule.get("field") or USER_ID
                return field, _sticky_id(field)(u, c)
            if kind == "flag":
                return f"flag:{rule.get('field')}", self._parent(rule, u, c)
        except Exception:  # an explanation never fails on odd input; the verdict stands
            return None, None
        return None, None

    def _parent(self, rule, u, c):
        """The prerequisite's result as the rule saw it: from the snapshot's compiled table, as the
        rule reads it (snapshot.evaluate would count it on a counting snapshot)."""
        parent = self.scope.table.get(rule.get("field"))
        if parent is None:
            return {"enabled": False, "variant": None, "reason": FLAG_NOT_FOUND}
        if parent.__class__ is not Evaluation:
            parent = parent(u, c)
        return {"enabled": parent.enabled, "variant": parent.variant, "reason": parent.reason}

    def _message(self, node, u, c):
        rule = node.rule if isinstance(node.rule, dict) else {}
        kind = rule.get("type")
        operator = rule.get("operator")
        matched = bool(node.verdict)
        value = rule.get("value")
        try:
            if kind == "percentage":
                return self._percentage_message(rule, u, c, matched)
            if kind == "flag":
                parent_key = rule.get("field")
                if (self.key, parent_key) in self.scope.broken_prerequisites:
                    return f"prerequisite {parent_key!r} is on a cycle: never matches"
                parent = self._parent(rule, u, c)
                if parent["reason"] == FLAG_NOT_FOUND:
                    return f"prerequisite {parent_key!r} does not exist here"
                state = "on" if parent["enabled"] else f"off ({parent['reason']})"
                if parent["enabled"] and parent["variant"] is not None:
                    state += f", variant {parent['variant']!r}"
                want = {"enabled": "to be on", "disabled": "to be off"}.get(
                    operator, f"a variant in {_show(value)}")
                return f"prerequisite {parent_key!r} was {state}; rule wants it {want}"
            if kind == "segment":
                keys = _strings(value)
                tried = {child.segment: bool(child.verdict) for child in node.children if child.tried}
                if operator == "not_in":
                    inside = [key for key in keys if tried.get(key)]
                    return f"in segment {inside[0]!r}" if inside else f"in none of the segments {_show(keys)}"
                missed = [key for key in keys if not tried.get(key)]
                if missed:
                    unknown = "" if missed[0] in self.scope.segments else " (no such segment)"
                    return f"segment {missed[0]!r} did not match{unknown}"
                return f"in segment {keys[0]!r}" if len(keys) == 1 else f"in every segment of {_show(keys)}"
            if kind in ("all", "any"):
                tried = [child for child in node.children if child.tried]
                total = len(node.children)
                if kind == "all":
                    if matched:
                        return f"all {total} rules matched"
                    first = next((child for child in tried if not child.verdict), None)
                    return f"{first.path} did not match" if first else "no rules"
                if matched:
                    first = next(child for child in tried if child.verdict)
                    return f"{first.path} matched"
                return f"none of {total} rules matched" if total else "no rules: never matches"
            if kind == "not":
                return "the negated rule did not match" if matched else "the negated rule matched"
            attribute, seen = self._seen(kind, rule, u, c)
            if attribute is None:
                return "matched" if matched else "did not match"
            if kind in ("geo", "device") and seen is None:
                shown = "no country and no ip" if kind == "geo" else "no device and no userAgent"
            elif seen is None:
                shown = f"{attribute} is missing"
            else:
                shown = f"{attribute} is {_show(seen)}"
                if attribute in ("ip", "userAgent"):  # what the offline lookup made of it
                    derived = (country_reader() if kind == "geo" else device_reader())(c)
                    shown += f" ({'country' if kind == 'geo' else 'device'} {_show(derived) if derived else 'unknown'})"
            rule_text = f"{operator} {_show(value)}" if "value" in rule else str(operator)
            if rule.get("caseInsensitive"):
                rule_text += ", case-insensitive"
            return f"{shown} (rule: {rule_text})"
        except Exception:  # never fail an explanation on odd input
            return "matched" if matched else "did not match"

    def _percentage_message(self, rule, u, c, matched):
        percent = rule.get("value")
        field = rule.get("field") or USER_ID
        identifier = _sticky_id(field)(u, c)
        where = "in" if matched else "not in"
        if identifier is None:
            if field in (DEFAULT_STICKINESS, RANDOM_STICKINESS):
                return f"{where} the {_percent(percent)}% rollout (no sticky id: a random bucket)"
            return f"not in the {_percent(percent)}% rollout: no {field} to bucket by"
        salt = rule.get("salt") or self.salt
        position = bucket(salt, identifier)
        sign = "<=" if matched else ">"
        return (f"{where} the {_percent(percent)}% rollout (bucket {position} {sign} "
                f"{math.floor(percent)}, by {field})")


def _percent(value):
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _strings(value):
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _show(value):
    if isinstance(value, list):
        shown = ", ".join(_show(item) for item in value[:MAX_SHOWN])
        more = f", ... ({len(value)} in all)" if len(value) > MAX_SHOWN else ""
        return f"[{shown}{more}]"
    if isinstance(value, str):
        return repr(value if len(value) <= 200 else value[:200] + "...")
    return repr(value)
