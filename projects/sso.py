"""Single sign-on's group mapping: which project roles a group of the identity provider grants.

settings.FLAGS_OIDC_GROUP_ROLES maps a claim group (a value of the token's groups claim) to role
grants: {"payments-devs": [{"project": "payments", "role": "editor", "environments": ["development"]}]}.
Each mapped claim group is one Django group named "oidc:<claim group>" holding exactly those
RoleGrants, so projects/policy.py enforces them like any other group's. At every SSO login
(flagsite/sso.py calls ``login_sync``):

- the groups are synced to the setting (an "oidc:" group the setting no longer lists holds no grant);
- the user is created or updated (username from FLAGS_OIDC_USERNAME_CLAIM, email);
- the user belongs to exactly the "oidc:" groups of the claim groups in their token: someone removed
  from a group at the provider loses its roles at their next login. Groups without the prefix
  (made by hand in the admin) are never touched;
- with FLAGS_OIDC_STAFF_GROUPS / FLAGS_OIDC_SUPERUSER_GROUPS set, is_staff / is_superuser follow
  membership of those claim groups.

The writes are services (projects/services.py), each audited when it changes something.
"""

import json
import logging

from django.conf import settings
from django.db import transaction

from projects.models import Role

PREFIX = "oidc:"
GROUP_NAME_MAX = 150 - len(PREFIX)  # auth.Group.name is 150 characters
logger = logging.getLogger("flagsite.sso")


class MappingError(ValueError):
    """The SSO settings are wrong; the message names the setting and what to fix."""


def group_name(claim_group):
    return PREFIX + claim_group


def group_roles(raw=None):
    """FLAGS_OIDC_GROUP_ROLES (a dict, or it as JSON text) checked and normalised to
    {claim group: [{"project", "role", "environments"}]}; MappingError says what is wrong."""
    raw = settings.FLAGS_OIDC_GROUP_ROLES if raw is None else raw
    name = "FLAGS_OIDC_GROUP_ROLES"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw or "{}")
        except json.JSONDecodeError as exc:
            raise MappingError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MappingError(f'{name} must be an object: {{"<claim group>": [{{"project": ..., "role": ...}}]}}.')
    mapping = {}
    for claim_group, grants in raw.items():
        where = f"{name}[{claim_group!r}]"
        if not claim_group or len(claim_group) > GROUP_NAME_MAX:
            raise MappingError(f"{where}: a claim group name has 1-{GROUP_NAME_MAX} characters.")
        if not isinstance(grants, list):
            raise MappingError(f"{where} must be a list of grants.")
        mapping[claim_group] = []
        for index, grant in enumerate(grants):
            at = f"{where}[{index}]"
            if not isinstance(grant, dict) or set(grant) - {"project", "role", "environments"}:
                raise MappingError(f'{at} must be an object with "project", "role" and optionally "environments".')
            project, role, environments = grant.get("project"), grant.get("role"), grant.get("environments", [])
            if not isinstance(project, str) or not project:
                raise MappingError(f'{at}: "project" must be a project key.')
            if role not in Role.values:
                raise MappingError(f'{at}: "role" must be one of {", ".join(Role.values)}, not {role!r}.')
            if not isinstance(environments, list) or not all(isinstance(e, str) and e for e in environments):
                raise MappingError(f'{at}: "environments" must be a list of environment keys.')
            if any(g["project"] == project and g["role"] == role for g in mapping[claim_group]):
                raise MappingError(f"{at}: {role} in {project} is listed twice for this group.")
            mapping[claim_group].append({"project": project, "role": role, "environments": sorted(set(environments))})
    return mapping


def claim(claims, path):
    """The value of a claim; "a.b" reads member b of claim a (Keycloak's realm_access.roles)."""
    value = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def claim_groups(claims):
    """The claim groups a token names (a list, or one string), as a set of strings."""
    value = claim(claims, settings.FLAGS_OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        value = [value]
    return {item for item in value or () if isinstance(item, str) and item}


def username(claims):
    value = claim(claims, settings.FLAGS_OIDC_USERNAME_CLAIM)
    return value.strip()[:150] if isinstance(value, str) else ""


def login_sync(*, actor, claims):
    """The user a login's claims describe, created or updated, with their groups and roles synced
    (module docstring). One transaction: a login either applies all of it or none."""
    from projects import services

    name = username(claims)
    if not name:
        raise MappingError(f"The token has no {settings.FLAGS_OIDC_USERNAME_CLAIM!r} claim "
                           "(FLAGS_OIDC_USERNAME_CLAIM) to name the user.")
    mapping = group_roles()
    groups = claim_groups(claims)

    def member_of(setting):
        return bool(groups & set(setting)) if setting else None  # None: leave the flag as it is

    with transaction.atomic():
        services.sso_groups_sync(actor=actor, mapping=mapping)
        return services.sso_user_sync(actor=actor, username=name, email=claim(claims, "email") or "",
                                      claim_groups=groups & set(mapping),
                                      staff=member_of(settings.FLAGS_OIDC_STAFF_GROUPS),
                                      superuser=member_of(settings.FLAGS_OIDC_SUPERUSER_GROUPS))
