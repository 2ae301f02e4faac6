"""The dashboard's create form (/flags/new/): key, name, description, kind, variants and tags, created
through services.flag_create (the REST create's service) with flags.add_flag, as REST's POST needs.

Served at /flags/new/ (/flags/new redirects there while no flag is called "new"). Server-rendered
and usable without JavaScript: variants are a fixed set of rows (blank rows are
ignored). Bad input re-renders the form with each error at its field (400) and writes nothing; a key
that exists (or was taken by a create racing this one) is an error on the key (409)."""

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify

from audit.actor import Actor
from flags import services
from flags.errors import Conflict, ValidationFailed
from flags.models import Flag
from flags.pages import staff_required

ADD_FLAGS = ("flags.add_flag",)  # what REST's POST /api/flags requires
VARIANT_ROWS = 6
EMPTY = {"key": "", "name": "", "description": "", "kind": "boolean", "tags": ""}


def _variant_rows(post):
    """[{key, weight, value, index}] as typed; `index`: its place in the variants list sent to the
    service (None for a blank row)."""
    rows, index = [], 0
    for n in range(VARIANT_ROWS):
        row = {name: post.get(f"variant-{n}-{name}", "").strip()[:10_000] for name in ("key", "weight", "value")}
        row["index"] = index if any(row.values()) else None
        index += row["index"] is not None
        rows.append(row)
    return rows


def _parse(post):
    """(values as typed, rows, payload for the service, errors found before the service)."""
    values = {name: post.get(name, EMPTY[name]).strip() for name in EMPTY}
    errors = {}
    rows = _variant_rows(post)
    variants = []
    if values["kind"] == Flag.Kind.MULTIVARIATE:
        for row in rows:
            if row["index"] is None:
                continue
            variant = {"key": row["key"]}
            path = f"variants[{row['index']}]"
            try:
                variant["weight"] = int(row["weight"] or "0")
            except ValueError:
                errors.setdefault(f"{path}.weight", []).append("A whole number (the weights total 100).")
            if row["value"]:
                try:
                    variant["value"] = json.loads(row["value"])
                except json.JSONDecodeError as exc:
                    errors.setdefault(f"{path}.value", []).append(f"Not JSON ({exc.msg}): quote text, e.g. \"blue\".")
            variants.append(variant)
        total = sum(v.get("weight", 0) for v in variants)
        if variants and not errors and total != 100:
            errors.setdefault("variants", []).append(f"The weights total {total}, not 100.")
    tags = [t.strip() for t in values["tags"].split(",") if t.strip()]
    payload = {"name": values["name"], "description": values["description"], "kind": values["kind"],
               "tags": list(dict.fromkeys(tags)), "variants": variants}
    return values, rows, payload, errors


def _place(errors, rows):
    """Service paths onto the form: "variants[1].weight" goes on the second filled row's weight."""
    fields, row_errors, general = {}, {}, []
    by_index = {row["index"]: n for n, row in enumerate(rows) if row["index"] is not None}
    for path, msgs in errors.items():
        head = path.split(".")[0].split("[")[0]
        if head == "variants" and path != "variants" and path.startswith("variants["):
            index = int(path[len("variants["):path.index("]")])
            name = path.split(".")[1] if "." in path else "key"
            row_errors.setdefault((by_index.get(index, 0), name), []).extend(msgs)
        elif head in ("key", "name", "description", "kind", "tags", "variants"):
            fields.setdefault(head, []).extend(msgs if path == head else [f"{path}: {m}" for m in msgs])
        else:
            general.extend(f"{path}: {m}" for m in msgs)
    for n, row in enumerate(rows):
        row["errors"] = {name: row_errors.get((n, name), []) for name in ("key", "weight", "value")}
    return fields, general


@staff_required(perms=ADD_FLAGS)
def flag_new(request):
    if request.method != "POST":
        return _form(request, dict(EMPTY), _variant_rows({}), {}, [])
    values, rows, payload, errors = _parse(request.POST)
    status = 400
    if not errors:
        try:
            key = values["key"] or slugify(values["name"])[:128]  # as REST: the name's slug
            flag = services.flag_create(actor=Actor.from_request(request), key=key, **payload)
        except Conflict as exc:
            errors, status = exc.fields or {"key": [exc.message]}, 409
        except ValidationFailed as exc:
            errors = exc.fields or {"key": [exc.message]}
        else:
            messages.success(request, f"Created {flag.key}: off in every environment until you turn it on.")
            return redirect(reverse("page-flag", args=[flag.key]))
    fields, general = _place(errors, rows)
    return _form(request, values, rows, fields, general or [], status=status, failed=True)


def _form(request, values, rows, fields, general, status=200, failed=False):
    return render(request, "flags/new.html", {
        "values": values, "rows": rows, "errors": fields, "general": general, "kinds": Flag.Kind.choices,
        "failed": failed,
    }, status=status)
