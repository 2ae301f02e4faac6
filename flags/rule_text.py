"""Rules as readable sentences for the dashboard:
[geo in US, CA, UK; custom plan equals premium; percentage 30]
-> "country is US, CA or UK and plan is premium, then 30% of users".
"""

PHRASES = {
    "equals": "is", "not_equals": "is not", "in": "is", "not_in": "is not", "contains": "contains",
    "starts_with": "starts with", "ends_with": "ends with", "matches": "matches", "gt": "is greater than",
    "gte": "is at least", "lt": "is less than", "lte": "is at most", "before": "is before",
    "after": "is after", "semver_eq": "is version", "semver_gt": "is a version above",
    "semver_lt": "is a version below", "in_cidr": "is in", "is": "is", "is_not": "is not",
}


def word(value):
    """One value as a reader writes it: en, 18, true; quoted when it would not read as one word
    (empty, spaces, quotes)."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "nothing"}[value]
    text = str(value)
    if text == "" or any(c.isspace() or c in "\"'," for c in text):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def one_of(values, conjunction="or"):
    """A value or a list of them as prose: "en", "en or de", "a, b or c"."""
    if not isinstance(values, (list, tuple)):
        return word(values)
    return joined([word(v) for v in values], conjunction)


def joined(items, conjunction="or"):
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def condition(rule):
    """One rule (not a percentage) as a phrase."""
    if not isinstance(rule, dict):
        return "an unreadable rule"
    kind, op, value = rule.get("type"), rule.get("operator"), rule.get("value")
    if kind == "geo":
        return f"country {'is not' if op == 'not_in' else 'is'} {one_of(value, 'nor' if op == 'not_in' else 'or')}"
    if kind == "device":
        return f"device {PHRASES.get(op, op)} {one_of(value)}"
    if kind == "user":
        return f"user {'is not' if op == 'not_in' else 'is'} {one_of(value)}"
    if kind == "segment":
        return f"user {'is not' if op == 'not_in' else 'is'} in segment {one_of(value)}"
    if kind == "flag":
        flag = rule.get("field")
        if op == "variant_in":
            return f"flag {flag} serves {one_of(value)}"
        return f"flag {flag} is {'off' if op == 'disabled' else 'on'}"
    if kind == "percentage":
        return f"{value}% of users" + (f" by {rule['field']}" if rule.get("field") else "")
    if kind in ("all", "any"):
        parts = [condition(r) for r in rule.get("rules") or []]
        joined = f" {'and' if kind == 'all' else 'or'} ".join(parts)
        return f"({joined})" if len(parts) > 1 else joined
    if kind == "not":
        return f"not ({condition(rule.get('rule'))})"
    field = rule.get("field", "?")
    if op == "exists":
        return f"{field} is set"
    if op == "not_exists":
        return f"{field} is not set"
    if op in ("in", "not_in"):
        return f"{field} {PHRASES[op]} {one_of(value)}"
    return f"{field} {PHRASES.get(op, op)} {one_of(value)}"


def variant_split(variants):
    """[(variant, "50%")]: each variant's share of the weights (a multivariate flag's split)."""
    variants = [v for v in variants or [] if isinstance(v, dict)]
    total = sum(v.get("weight") or 0 for v in variants if isinstance(v.get("weight"), (int, float)))
    split = []
    for v in variants:
        weight = v.get("weight") if isinstance(v.get("weight"), (int, float)) else 0
        share = round(100 * weight / total, 1) if total else 0
        split.append((v, f"{share:g}%"))
    return split


def describe(rules, enabled=True, killed=False, variants=()):
    """The whole state as one sentence; a multivariate flag's `variants` say what those users get."""
    if killed:
        return "Killed: everyone gets the flag off."
    if not enabled:
        return "Off for everyone."
    rules = rules if isinstance(rules, list) else []
    percentages = [r for r in rules if isinstance(r, dict) and r.get("type") == "percentage"]
    conditions = [condition(r) for r in rules if r not in percentages]
    rollout = " and ".join(condition(r) for r in percentages)
    if conditions and rollout:
        sentence = f"When {' and '.join(conditions)}, then {rollout}"
    elif conditions:
        sentence = f"When {' and '.join(conditions)}, then everyone"
    else:
        sentence = f"On for {rollout or 'everyone'}"
    split = variant_split(variants)
    if split:
        sentence += ", serving " + joined([f"{word(v.get('key'))} ({share})" for v, share in split])
    return sentence + "."
