"""Which flags need a targeting key (a user id) to be evaluated meaningfully.

OpenFeature has an error for this, ``TARGETING_KEY_MISSING``. Flagsite answers it (OFREP and the
OpenFeature provider) only when the flag's answer actually depends on the user id and none was
given: a ``user`` rule, a ``percentage`` rule or a ``custom`` rule on ``userId``, a weighted choice
between two or more variants sticky on ``userId`` - directly, through a segment, or through a
prerequisite flag. A flag that is off (killed or disabled) or has no such rule evaluates without
one (a global kill switch needs no user).

Pure Python over a compiled ``engine.Snapshot``; the answer is memoised per snapshot object.
"""

import weakref

USER_ID = "userId"
_memo = weakref.WeakKeyDictionary()


def needs_targeting_key(snapshot, flag_key):
    """True when evaluating ``flag_key`` in ``snapshot`` depends on the user id."""
    try:
        cache = _memo.get(snapshot)
        if cache is None:
            cache = _memo.setdefault(snapshot, {})
    except TypeError:  # not weak-referenceable: no memo
        cache = {}
    answer = cache.get(flag_key)
    if answer is None:
        answer = _Scan(snapshot).flag(flag_key)
        cache[flag_key] = answer
    return answer


class _Scan:
    def __init__(self, snapshot):
        self.snapshot = snapshot
        self.seen_flags = set()
        self.seen_segments = set()

    def flag(self, key):
        if key in self.seen_flags:
            return False
        self.seen_flags.add(key)
        compiled = getattr(self.snapshot, "flags", {}).get(key)
        if compiled is None:
            return False
        state = compiled.state
        if state.get("killed") or not state.get("enabled"):
            return False
        stickiness = state.get("stickiness") or USER_ID
        if self.variants(state.get("variants"), stickiness):
            return True
        return any(self.rule(rule, stickiness) for rule in state.get("rules") or ())

    @staticmethod
    def variants(variants, stickiness):
        weighted = [v for v in variants or () if isinstance(v, dict) and (v.get("weight") or 0) > 0]
        return len(weighted) > 1 and stickiness == USER_ID

    def rule(self, rule, stickiness):
        if not isinstance(rule, dict):
            return False
        kind = rule.get("type")
        if rule.get("variants") and self.variants(rule["variants"], rule.get("stickiness") or stickiness):
            return True
        if kind == "user":
            return True
        if kind == "percentage":
            return (rule.get("field") or USER_ID) == USER_ID
        if kind == "custom":
            return rule.get("field") == USER_ID
        if kind in ("all", "any"):
            return any(self.rule(child, stickiness) for child in rule.get("rules") or ())
        if kind == "not":
            return self.rule(rule.get("rule"), stickiness)
        if kind == "segment":
            return any(self.segment(key) for key in rule.get("value") or ())
        if kind == "flag":
            return self.flag(rule.get("field"))
        return False

    def segment(self, key):
        if key in self.seen_segments:
            return False
        self.seen_segments.add(key)
        rules = getattr(self.snapshot, "segments", {}).get(key) or ()
        return any(self.rule(rule, USER_ID) for rule in rules)
