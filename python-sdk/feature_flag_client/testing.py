"""A test double for code that uses Flagsite: flags from a dict, no server.

    flags = FakeFlagClient({"new-checkout": True, "button-color": "green",
                            "pricing": {"enabled": True, "rules": [...]}})   # full engine state too
    flags.is_enabled("new-checkout", "user-1")          # True
    flags.evaluate_flag("button-color", "user-1")["value"]  # "green"
    flags.set("new-checkout", False)
"""

from .local import LocalEvaluator


def _state(key, spec):
    if isinstance(spec, dict):
        return {"key": key, "enabled": True, **spec}
    if isinstance(spec, bool):
        return {"key": key, "enabled": spec}
    # Any other value: a multivariate flag serving that one value.
    return {"key": key, "kind": "multivariate", "enabled": True,
            "variants": [{"key": str(spec), "weight": 1, "value": spec}]}


class FakeFlagClient(LocalEvaluator):
    """Same evaluation API as the local client, loaded from a dict; counts what was evaluated."""

    def __init__(self, flags=None, segments=None, environment="test"):
        self._flags = dict(flags or {})
        self._segments = dict(segments or {})
        self.environment = environment
        super().__init__(self._payload())

    def _payload(self):
        return {"environment": self.environment, "version": 1, "segments": self._segments,
                "flags": [_state(key, spec) for key, spec in self._flags.items()]}

    def set(self, flag_id, spec):
        self._flags[flag_id] = spec
        self.load(self._payload())

    def evaluate_bulk(self, user_id=None, context=None, flag_ids=None):
        keys = self._flags if flag_ids is None else flag_ids
        return [self.evaluate_flag(key, user_id, context) for key in keys]
