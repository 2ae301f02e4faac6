"""Who performed a write. Every service takes `actor`, so every audit entry has an author."""

import os
import pwd
import uuid
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from django.conf import settings


def _clean_ip(value):
    try:
        return str(ip_address((value or "").strip()))
    except ValueError:
        return None


def client_ip(request_or_meta):
    """The client's address of a request (or its META): REMOTE_ADDR, unless settings.NUM_PROXIES
    trusted proxies are in front, then X-Forwarded-For's NUM_PROXIES-th entry from the end (the one
    the outermost trusted proxy appended; anything left of it is whatever the client sent). The
    same rule as DRF's throttle ident (REST_FRAMEWORK["NUM_PROXIES"]). None if not an address."""
    meta = getattr(request_or_meta, "META", request_or_meta)
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if settings.NUM_PROXIES and forwarded:
        entries = forwarded.split(",")
        return _clean_ip(entries[-min(settings.NUM_PROXIES, len(entries))])
    return _clean_ip(meta.get("REMOTE_ADDR"))


def os_user():
    """The operating-system account running this process, from the uid (not $USER, which the
    caller sets)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid{os.geteuid()}"


@dataclass(frozen=True)
class Actor:
    label: str
    user: Any = None
    api_key: Any = None  # an ApiKey or the API layer's principal (anything with .prefix)
    request_id: str = ""
    ip: str | None = None

    @classmethod
    def system(cls, label="system"):
        return cls(label=label)

    @classmethod
    def cli(cls, claimed=None, *, command=None):
        """A management command's caller: the OS user, plus the name they claim ("cli:root as
        admin"), which nothing verifies and so is never recorded alone; command: which one wrote
        without a person behind it ("cli:root (bootstrap)")."""
        label = f"cli:{os_user()}" + (f" ({command})" if command else "")
        claimed = (claimed or "").strip()
        return cls(label=f"{label} as {claimed}" if claimed else label)

    @classmethod
    def for_user(cls, user, **kwargs):
        return cls(label=user.get_username(), user=user, **kwargs)

    @classmethod
    def from_request(cls, request):
        """User, API key, request id and client IP of a Django or DRF request."""
        meta = request.META
        request_id = (meta.get("HTTP_X_REQUEST_ID") or "")[:64] or uuid.uuid4().hex
        ip = client_ip(meta)
        user = getattr(request, "user", None)
        api_key = getattr(request, "auth", None)
        if not hasattr(api_key, "prefix"):
            api_key = None
        real_user = user if getattr(user, "pk", None) is not None and user.is_authenticated else None
        if real_user is not None and api_key is not None:
            label = f"{real_user.get_username()} (apikey:{api_key.prefix})"
        elif real_user is not None:
            label = real_user.get_username()
        elif api_key is not None:
            label = f"apikey:{api_key.prefix}"
        else:
            label = "anonymous"
        return cls(label=label, user=real_user, api_key=api_key, request_id=request_id, ip=ip)
