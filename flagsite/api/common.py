"""Small helpers every API view shares: input validation, environment, actor, If-Match."""

import re

from django.utils.text import slugify

from flags.errors import ValidationFailed
from flags.selectors import environment_get
from flagsite.api.permissions import request_environment

_VERSION = re.compile(r"[0-9]{1,20}")


def validate(serializer_class, data, **kwargs):
    """Validated data, or a 400 with field paths (raised; shaped by the exception handler)."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def key_from(data):
    """The key given in the body, else the slug of the name ("New Feature" -> "new-feature")."""
    key = data.pop("key", None) or slugify(data["name"])[:128]
    if not key:
        raise ValidationFailed(fields={"key": ["Give a key: the name has no letters or digits to derive one."]})
    return key


def environment_for(request, requested=None, check_exists=True):
    """The environment key a management view reads or writes, in the current project; with
    check_exists=False the environment's ref, for get_snapshot (projects/scope.py)."""
    environment = request_environment(request, requested)
    if not check_exists:
        return environment
    return environment_get(environment).key  # unknown -> 400 on "environment"


def expected_version(request, body_version=None):
    """The optimistic-concurrency token: ``version`` in the body, else the ``If-Match`` header."""
    if body_version is not None:
        return body_version
    header = request.headers.get("If-Match", "").strip()
    if not header or header == "*":
        return None
    token = header.removeprefix("W/").strip('"')
    # ASCII digits only: str.isdigit() also takes "²" (int() then raises) and a 5,000-digit number
    # exceeds int()'s limit; both were 500s.
    if not _VERSION.fullmatch(token):
        raise ValidationFailed(fields={"If-Match": ["Expected the flag state's version, e.g. \"3\"."]})
    return int(token)


def actor_for(request):
    from audit.actor import Actor

    return Actor.from_request(request)
