"""Write-time validation of rules and variants: every error as (path, message) a person understands.

The server refuses a write when this returns anything, so the compiler never meets a bad rule.
"""

import re

from .compiler import prerequisite_refs, segment_refs, segment_rules
from .lookups import DEVICES
from .operators import CASE_INSENSITIVE_OPERATORS, MAX_LIST_LENGTH, OPERATORS, check_regex

MAX_DEPTH = 16
MAX_RULES = 1000
MAX_VARIANTS = 100
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")

_PLAN_KEYS = {"variants", "salt", "stickiness"}
_COMMON_KEYS = {"type", "description"}
_KEYS = {
    "geo": {"operator", "value"},
    "device": {"operator", "value"},
    "percentage": {"operator", "value", "field", "salt"},
    "user": {"operator", "value"},
    "custom": {"operator", "value", "field", "caseInsensitive"},
    "all": {"rules"},
    "any": {"rules"},
    "not": {"rule"},
    "segment": {"operator", "value"},
    "flag": {"operator", "value", "field"},
}
_OPERATORS = {
    "geo": ("in", "not_in"),
    "device": ("is", "is_not", "in", "not_in"),
    "percentage": ("less_than",),
    "user": ("in", "not_in"),
    "segment": ("in", "not_in"),
    "flag": ("enabled", "disabled", "variant_in"),
}


def _choices(values):
    return ", ".join(sorted(values))


class _Validator:
    def __init__(self, segments, flags, flag_key, segment_key, allow_variants):
        self.segments = segments
        self.flags = flags
        self.flag_key = flag_key
        self.segment_key = segment_key
        self.allow_variants = allow_variants
        self.errors = []
        self.count = 0

    def error(self, path, message):
        self.errors.append((path, message))

    def rules(self, rules, path, depth):
        if not isinstance(rules, list):
            self.error(path, "must be a list of rules")
            return
        for index, rule in enumerate(rules):
            self.rule(rule, f"{path}[{index}]", depth)

    def rule(self, rule, path, depth):
        self.count += 1
        if self.count > MAX_RULES:
            if self.count == MAX_RULES + 1:
                self.error(path, f"too many rules: at most {MAX_RULES} in one flag or segment")
            return
        if depth > MAX_DEPTH:
            self.error(path, f"rules are nested too deeply (at most {MAX_DEPTH} levels)")
            return
        if not isinstance(rule, dict):
            self.error(path, "must be an object with a 'type'")
            return
        kind = rule.get("type")
        if kind not in _KEYS:
            self.error(f"{path}.type", f"unknown rule type {kind!r}; expected one of {_choices(_KEYS)}")
            return
        allowed = _KEYS[kind] | _COMMON_KEYS | (_PLAN_KEYS if self.allow_variants else set())
        for key in rule:
            if key not in allowed:
                hint = " (variants are not allowed in segments)" if key in _PLAN_KEYS else ""
                self.error(f"{path}.{key}", f"unknown field {key!r} for a {kind} rule{hint}")
        if kind in _OPERATORS:
            operator = rule.get("operator")
            if operator not in _OPERATORS[kind]:
                self.error(f"{path}.operator", f"unknown operator {operator!r} for a {kind} rule; "
                           f"expected one of {_choices(_OPERATORS[kind])}")
                return
        getattr(self, "_" + kind)(rule, path, depth)
        if "variants" in rule:
            self.errors.extend(validate_variants(rule["variants"], f"{path}.variants", allow_empty=True))
        for key in ("salt", "stickiness"):
            if key in rule and not (isinstance(rule[key], str) and rule[key]):
                self.error(f"{path}.{key}", "must be a non-empty string")

    def _string_list(self, rule, path, what, check=None):
        value = rule.get("value")
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            self.error(f"{path}.value", f"must be a non-empty list of {what}")
            return []
        if len(value) > MAX_LIST_LENGTH:
            self.error(f"{path}.value", f"must have at most {MAX_LIST_LENGTH} items")
            return []
        if check is not None:
            for index, item in enumerate(value):
                message = check(item)
                if message:
                    self.error(f"{path}.value[{index}]", message)
        return value

    def _geo(self, rule, path, depth):
        self._string_list(rule, path, "country codes such as \"US\"",
                          lambda code: None if _COUNTRY.match(code) else
                          f"{code!r} is not a two-letter ISO country code")

    def _device(self, rule, path, depth):
        def check(device):
            return None if device.lower() in DEVICES else (
                f"{device!r} is not a device class; expected one of {', '.join(DEVICES)}")

        if rule["operator"] in ("is", "is_not"):
            value = rule.get("value")
            if not isinstance(value, str):
                self.error(f"{path}.value", f"must be one of {', '.join(DEVICES)}")
            elif check(value):
                self.error(f"{path}.value", check(value))
        else:
            self._string_list(rule, path, "device classes", check)

    def _percentage(self, rule, path, depth):
        value = rule.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(f"{path}.value", "must be a number between 0 and 100")
        elif not 0 <= value <= 100:
            self.error(f"{path}.value", f"must be between 0 and 100 (got {value})")
        if "field" in rule and not (isinstance(rule["field"], str) and rule["field"]):
            self.error(f"{path}.field", "must be the name of a context field, e.g. userId")

    def _user(self, rule, path, depth):
        self._string_list(rule, path, "user ids")

    def _custom(self, rule, path, depth):
        field = rule.get("field")
        if not isinstance(field, str) or not field:
            self.error(f"{path}.field", "must be the name of a context field")
        name = rule.get("operator")
        operator = OPERATORS.get(name)
        if operator is None:
            self.error(f"{path}.operator", f"unknown operator {name!r} for a custom rule; "
                       f"expected one of {_choices(OPERATORS)}")
            return
        if operator.needs_value:
            if "value" not in rule:
                self.error(f"{path}.value", f"is required for operator {name!r}")
            else:
                if name == "matches":  # the stall analysis depends on case folding
                    message = check_regex(rule["value"], case_insensitive=rule.get("caseInsensitive") is True)
                else:
                    message = operator.check(rule["value"])
                if message:
                    self.error(f"{path}.value", message)
        elif rule.get("value") is not None:
            self.error(f"{path}.value", f"must be absent for operator {name!r}")
        if "caseInsensitive" in rule:
            if not isinstance(rule["caseInsensitive"], bool):
                self.error(f"{path}.caseInsensitive", "must be true or false")
            elif rule["caseInsensitive"] and name not in CASE_INSENSITIVE_OPERATORS:
                self.error(f"{path}.caseInsensitive", f"does not apply to operator {name!r}")

    def _all(self, rule, path, depth):
        self.rules(rule.get("rules"), f"{path}.rules", depth + 1)

    _any = _all

    def _not(self, rule, path, depth):
        if "rule" not in rule:
            self.error(f"{path}.rule", "is required: the rule to negate")
        else:
            self.rule(rule["rule"], f"{path}.rule", depth + 1)

    def _segment(self, rule, path, depth):
        keys = self._string_list(rule, path, "segment keys")
        for index, key in enumerate(keys):
            if self.segments is not None and key not in self.segments:
                self.error(f"{path}.value[{index}]", f"unknown segment {key!r}")
            elif self.segment_key is not None and self._segment_reaches(key, self.segment_key):
                self.error(f"{path}.value[{index}]",
                           f"segment {key!r} refers back to segment {self.segment_key!r} (a cycle)")

    def _segment_reaches(self, start, target):
        seen, stack = set(), [start]
        while stack:
            key = stack.pop()
            if key == target:
                return True
            if key in seen or self.segments is None or key not in self.segments:
                continue
            seen.add(key)
            stack.extend(segment_refs(segment_rules(self.segments[key])))
        return False

    def _flag(self, rule, path, depth):
        parent = rule.get("field")
        if not isinstance(parent, str) or not parent:
            self.error(f"{path}.field", "must be the key of the prerequisite flag")
            return
        if rule["operator"] == "variant_in":
            self._string_list(rule, path, "variant keys")
        elif rule.get("value") is not None:
            self.error(f"{path}.value", f"must be absent for operator {rule['operator']!r}")
        if parent == self.flag_key:
            self.error(f"{path}.field", "a flag cannot be its own prerequisite")
        elif self.flags is not None and parent not in self.flags:
            self.error(f"{path}.field", f"unknown flag {parent!r}")
        elif self.flags is not None and self.flag_key is not None and self._flag_reaches(parent):
            self.error(f"{path}.field", f"flag {parent!r} depends on {self.flag_key!r} (a cycle)")

    def _flag_reaches(self, start):
        seen, stack = set(), [start]
        while stack:
            key = stack.pop()
            if key == self.flag_key:
                return True
            if key in seen:
                continue
            seen.add(key)
            stack.extend(prerequisite_refs(self.flags.get(key) or ()))
        return False


def validate_rules(rules, *, segments=None, flags=None, flag_key=None, segment_key=None, path="rules"):
    """Errors in a rule list as [(path, message)]; empty when valid.

    segments: mapping of segment key -> conditions (existence and cycle checks; None skips them).
    flags: mapping of flag key -> rules of that flag, all environments concatenated (existence and
        prerequisite-cycle checks; None skips them). flag_key: the flag being written.
    segment_key: set when validating a segment's own conditions (refuses variants and cycles).
    """
    validator = _Validator(segments, flags, flag_key, segment_key, allow_variants=segment_key is None)
    if isinstance(rules, dict) and segment_key is not None:
        rules = segment_rules(rules)  # a segment's seed shorthand
    validator.rules(rules, path, 0)
    return validator.errors


def validate_variants(variants, path="variants", allow_empty=True):
    """Errors in a variant list as [(path, message)]."""
    errors = []
    if not isinstance(variants, list):
        return [(path, "must be a list of variants")]
    if not variants and not allow_empty:
        return [(path, "a multivariate flag needs at least one variant")]
    if len(variants) > MAX_VARIANTS:
        return [(path, f"at most {MAX_VARIANTS} variants")]
    seen = set()
    total = 0
    for index, variant in enumerate(variants):
        here = f"{path}[{index}]"
        if not isinstance(variant, dict):
            errors.append((here, "must be an object with key, weight and value"))
            continue
        for field in variant:
            if field not in ("key", "weight", "value", "overrides", "description"):
                errors.append((f"{here}.{field}", f"unknown field {field!r} for a variant"))
        key = variant.get("key")
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            errors.append((f"{here}.key", "must be a short key of letters, digits, '.', '_', '-' or ':'"))
        elif key in seen:
            errors.append((f"{here}.key", f"duplicate variant key {key!r}"))
        else:
            seen.add(key)
        weight = variant.get("weight", 0)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0 or weight > 1_000_000:
            errors.append((f"{here}.weight", "must be a whole number between 0 and 1000000"))
        else:
            total += weight
        overrides = variant.get("overrides", [])
        if not isinstance(overrides, list):
            errors.append((f"{here}.overrides", "must be a list of {field, values}"))
            continue
        for number, override in enumerate(overrides):
            where = f"{here}.overrides[{number}]"
            if not isinstance(override, dict) or not isinstance(override.get("field"), str):
                errors.append((f"{where}.field", "must name a context field"))
            elif not isinstance(override.get("values"), list) or not all(
                isinstance(v, (str, int)) and not isinstance(v, bool) for v in override["values"]
            ):
                errors.append((f"{where}.values", "must be a list of strings"))
    if variants and not errors and total == 0:
        errors.append((path, "variant weights must add up to more than 0"))
    return errors


def validate_off_variant(off_variant, variants, kind="multivariate", path="offVariant"):
    """Errors in a state's off variant (the variant served while the flag is off) as
    [(path, message)]. Blank or None means none; otherwise it must name one of the variants of a
    multivariate flag."""
    if off_variant is None or off_variant == "":
        return []
    if not isinstance(off_variant, str):
        return [(path, "must be a variant key or empty")]
    if kind != "multivariate":
        return [(path, "only multivariate flags have an off variant")]
    keys = [v.get("key") for v in variants or () if isinstance(v, dict)]
    if off_variant not in keys:
        choices = ", ".join(repr(k) for k in keys if isinstance(k, str)) or "none"
        return [(path, f"unknown variant {off_variant!r}; expected one of {choices}")]
    return []


__all__ = ["validate_rules", "validate_variants", "validate_off_variant", "check_regex"]
