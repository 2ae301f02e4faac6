"""What every explanation must satisfy, engine or REST: the same answer as the evaluation, and a
deciding rule consistent with the reason. Works on the JSON form (Explanation.as_dict())."""

import re

OFF_WITHOUT_RULE = ("KILLED", "DISABLED", "STATIC", "FLAG_NOT_FOUND")
STEP = re.compile(r"\.?(?:(rules)\[(\d+)\]|(rule)|(segments)\.([^.]+)|(conditions)\[(\d+)\])")


def resolve(rules, path, segments):
    """The rule object at a validator path ("rules[1].rules[0].rule") in a flag's rules; segment
    nodes ("segments.<key>") resolve to the segment key, their conditions to the condition."""
    node, position = {"rules": rules}, 0
    while position < len(path):
        step = STEP.match(path, position)
        assert step, f"bad path {path!r} at {position}"
        if step.group(1):
            node = node["rules"][int(step.group(2))]
        elif step.group(3):
            node = node["rule"]
        elif step.group(4):
            node = {"segment": step.group(5), "conditions": segment_conditions(segments[step.group(5)])}
        else:
            node = node["conditions"][int(step.group(7))]
        position = step.end()
    return node


def segment_conditions(conditions):
    from feature_flag_client.engine import segment_rules

    return segment_rules(conditions)


def walk(traces):
    for trace in traces:
        yield trace
        yield from walk(trace.get("rules", ()))


def check(explained, evaluated, state, segments):
    """Problems (a list of strings) of one explanation against the normal evaluation."""
    problems = []
    for field in ("enabled", "variant", "value", "reason", "rule"):
        if explained[field] != evaluated[field] or type(explained[field]) is not type(evaluated[field]):
            problems.append(f"{field}: explain={explained[field]!r} evaluate={evaluated[field]!r}")
    reason, deciding, top = explained["reason"], explained["decidingRule"], explained["rules"]
    rules = (state or {}).get("rules") or []
    for trace in walk(top):  # every path names the rule it reports on
        target = resolve(rules, trace["path"], segments)
        if "segment" in target:
            if trace.get("segment") != target["segment"]:
                problems.append(f"{trace['path']}: names segment {trace.get('segment')!r}")
        elif trace["type"] != target.get("type"):
            problems.append(f"{trace['path']}: type {trace['type']!r} but the rule there is {target.get('type')!r}")
    if reason in OFF_WITHOUT_RULE:
        if deciding is not None or top:
            problems.append(f"{reason}: no rule decides, got {deciding!r} and {len(top)} traces")
    elif reason == "RULE_MISMATCH":
        if deciding != f"rules[{explained['rule']}]":
            problems.append(f"RULE_MISMATCH: deciding {deciding!r}, rule index {explained['rule']!r}")
        elif not top or top[-1]["path"] != deciding or top[-1]["matched"]:
            problems.append("RULE_MISMATCH: the deciding rule must be the last tried and unmatched")
        if any(not trace["matched"] for trace in top[:-1]):
            problems.append("RULE_MISMATCH: a rule before the deciding one did not match")
    else:  # TARGETING_MATCH, SPLIT: on
        if not explained["enabled"]:
            problems.append(f"{reason} but off")
        if len(top) != len(rules) or not all(trace["matched"] for trace in top):
            problems.append(f"{reason}: every rule must be tried and matched")
        if rules:
            found = [trace for trace in walk(top) if trace["path"] == deciding]
            if not found or not found[0]["matched"]:
                problems.append(f"{reason}: deciding rule {deciding!r} must be a tried, matched rule")
        elif deciding is not None:
            problems.append(f"{reason} with no rules: no deciding rule, got {deciding!r}")
    return problems
