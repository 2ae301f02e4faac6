"""What an upstream (a primary, or a relay serving a relay of its own) shares with a relay token:
the environments it may read, their snapshot payloads, and the key hashes a relay needs to
authenticate its own clients with the same key-cache code (flagsite/api/authentication.py).

A primary reads them from its database and its process's snapshots (flags/snapshot.py); a relay
from what it follows (relay/state.py), so relays chain with the same code.
"""

import hashlib
import json

from flags import snapshot
from projects import scope
from relay import state as relay_state


def allowed_environments(principal):
    """Environment refs a relay token may read: its list, or every environment of its project."""
    if principal.environments:
        return sorted(principal.environments)
    if relay_state.enabled():
        return sorted(env for env in relay_state.state.versions() if scope.split(env)[0] == principal.project)
    from flags.models import Environment

    return sorted(scope.ref(project, key) for project, key in
                  Environment.all_objects.filter(project_id=principal.project).values_list("project_id", "key"))


def snapshots(principal):
    """{environment: payload} of the token's environments, at this process's current versions."""
    found = {}
    for environment in allowed_environments(principal):
        try:
            found[environment] = snapshot.snapshot_payload(environment)
        except Exception:  # an environment deleted meanwhile, or not followed (yet) by this relay
            continue
    return found


def _key_rows_from_database(principal):
    from flags.models import ApiKey

    rows = []
    keys = (ApiKey.all_objects.select_related("environment")
            .filter(project_id=principal.project, revoked_at__isnull=True, kind__in=("sdk", "relay"))
            .order_by("pk"))
    for api_key in keys:
        if api_key.kind == "sdk":
            environment = scope.ref(api_key.environment.project_id, api_key.environment.key)
            rows.append({"hash": api_key.key_hash, "kind": "sdk", "id": api_key.pk, "prefix": api_key.prefix,
                         "environment": environment, "project": api_key.environment.project_id, "environments": []})
        else:
            rows.append({"hash": api_key.key_hash, "kind": "relay", "id": api_key.pk, "prefix": api_key.prefix,
                         "environment": None, "project": api_key.project_id,
                         "environments": sorted(scope.ref(api_key.project_id, key)
                                                for key in api_key.relay_environments or ())})
    return rows


def key_rows(principal):
    """The active SDK keys of the token's environments and the relay tokens whose environments it
    covers (so a relay of this relay authenticates), as hashes: never a raw key."""
    allowed = set(allowed_environments(principal))
    rows = (_key_rows_from_database(principal) if not relay_state.enabled()
            else [{"hash": key_hash, **entry} for key_hash, entry in relay_state.state.keys.items()
                  if entry.get("project") == principal.project])
    kept = []
    for row in rows:
        if row["kind"] == "sdk" and row["environment"] not in allowed:
            continue
        if row["kind"] == "relay" and principal.environments and not (
                row["environments"] and set(row["environments"]) <= allowed):
            continue
        kept.append(row)
    return kept


def keys_version(rows):
    """A short digest of the key table: equal tables, equal versions (what a relay resumes with)."""
    text = json.dumps(sorted(rows, key=lambda row: row["hash"]), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
