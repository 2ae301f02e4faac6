"""The audit log as people read it (the dashboard's audit page and a flag's recent changes):
the entries of one action as one group, only the fields that changed, created and deleted
objects as field lists. Presentation only: entries are read, never changed.
"""

import json

from django.core.paginator import Paginator

# Every write moves these; they say nothing about what the operator changed.
NOISE = frozenset({"version", "updatedAt", "createdAt"})
OPEN_UP_TO = 6  # groups with more rows than this start collapsed
GROUP_FIELDS = ("id", "actor", "action", "target_type", "target_key", "request_id", "created_at")


def group(entries):
    """[[entry, ...]]: consecutive entries (newest first) of one action by one actor on one target,
    e.g. a kill in three environments. One action is one request (its request id); entries
    without one (commands, the system) group by the second they were written in."""
    groups, last = [], None
    for entry in entries:
        when = entry.request_id or entry.created_at.replace(microsecond=0)
        key = (entry.actor, entry.action, entry.target_type, entry.target_key, when)
        if key == last:
            groups[-1].append(entry)
        else:
            groups.append([entry])
            last = key
    return groups


def page_of_groups(entries, number, per_page):
    """A Paginator page of groups of the queryset `entries` (newest first). Grouping reads a few
    columns of every matching row (not the before/after JSON); the page's entries are then loaded
    whole."""
    page = Paginator(group(entries.values_list(*GROUP_FIELDS, named=True)), per_page).get_page(number)
    full = entries.model.objects.in_bulk([row.id for rows in page.object_list for row in rows])
    return page, [present([full[row.id] for row in rows]) for rows in page.object_list]


def fmt(value):
    if value is None or value == "":
        return "—"  # nothing, visibly
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def flatten(data, prefix=""):
    """[(dotted field, value)] of a dict, nested dicts opened up, noise left out."""
    rows = []
    for key, value in data.items():
        if key in NOISE:
            continue
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def diff(before, after):
    """[(dotted field, before, after)] of what changed, noise left out."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return [("value", before, after)] if before != after else []
    old, new = dict(flatten(before)), dict(flatten(after))
    return [(field, old.get(field), new.get(field)) for field in sorted(old.keys() | new.keys())
            if old.get(field) != new.get(field)]


def present(entries):
    """One group for the template: its newest entry (who, when, why), its environments, and rows:
    changes (field, before, after) or, for created / deleted objects, values (field, value)."""
    changes, values = [], []
    for entry in reversed(entries):  # oldest first: environments in the order they were written
        if entry.before is None and isinstance(entry.after, dict):
            values += [(entry.environment, field, fmt(v)) for field, v in flatten(entry.after)]
        elif entry.after is None and isinstance(entry.before, dict):
            values += [(entry.environment, field, fmt(v)) for field, v in flatten(entry.before)]
        else:
            changes += [(entry.environment, field, fmt(o), fmt(n)) for field, o, n in diff(entry.before, entry.after)]
    return {
        "entry": entries[0], "count": len(entries), "changes": changes, "values": values,
        "environments": list(dict.fromkeys(e.environment for e in reversed(entries) if e.environment)),
        "open": len(changes) + len(values) <= OPEN_UP_TO,
    }
