"""Evaluation results and reasons: the engine's output types."""

FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
KILLED = "KILLED"
DISABLED = "DISABLED"
RULE_MISMATCH = "RULE_MISMATCH"
TARGETING_MATCH = "TARGETING_MATCH"
SPLIT = "SPLIT"
STATIC = "STATIC"


class Reason:
    FLAG_NOT_FOUND = FLAG_NOT_FOUND
    KILLED = KILLED
    DISABLED = DISABLED
    RULE_MISMATCH = RULE_MISMATCH
    TARGETING_MATCH = TARGETING_MATCH
    SPLIT = SPLIT
    STATIC = STATIC


class Evaluation:
    """One flag decision. Instances are prebuilt at compile time and shared: never mutate them."""

    FIELDS = ("flag_id", "enabled", "variant", "value", "reason", "rule", "environment", "version")
    # hits: an itertools.count on results of a counting snapshot (Snapshot(counting=True)).
    __slots__ = FIELDS + ("hits",)

    def __init__(self, flag_id, enabled, variant, value, reason, rule=None, environment=None, version=None):
        self.flag_id = flag_id
        self.enabled = enabled
        self.variant = variant
        self.value = value
        self.reason = reason
        self.rule = rule
        self.environment = environment
        self.version = version
        self.hits = None

    def as_dict(self):
        return {
            "flagId": self.flag_id,
            "enabled": self.enabled,
            "variant": self.variant,
            "value": self.value,
            "reason": self.reason,
            "rule": self.rule,
            "environment": self.environment,
            "version": self.version,
        }

    def __eq__(self, other):
        if not isinstance(other, Evaluation):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.FIELDS)

    __hash__ = None

    def __repr__(self):
        return (
            f"Evaluation(flag_id={self.flag_id!r}, enabled={self.enabled!r}, variant={self.variant!r}, "
            f"value={self.value!r}, reason={self.reason!r}, rule={self.rule!r})"
        )
