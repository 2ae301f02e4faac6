"""Request ids: ``X-Request-ID`` honoured (when it looks like an id) or generated, put back in
``request.META`` so ``audit.actor.Actor.from_request`` stores the same id in audit entries, set
for the duration of the request in a context variable (every log line carries it), and returned
in the response's ``X-Request-ID`` header."""

import contextvars
import re
import uuid

request_id_var = contextvars.ContextVar("flagsite_request_id", default="")
_VALID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,64}$")


def request_id_from(meta):
    """The caller's id if it is a sane token (<= 64 chars, no spaces or control characters), else a new one."""
    given = meta.get("HTTP_X_REQUEST_ID", "")
    return given if given and _VALID.match(given) else uuid.uuid4().hex


def current_request_id():
    return request_id_var.get()
