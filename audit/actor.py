"""Who performed a write. Every service takes `actor`, so every audit entry has an author."""

import uuid
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any


def _clean_ip(value):
    try:
        return str(ip_address((value or "").strip()))
    except ValueError:
        return None


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
    def for_user(cls, user, **kwargs):
        return cls(label=user.get_username(), user=user, **kwargs)

    @classmethod
    def from_request(cls, request):
        """User, API key, request id and client IP of a Django or DRF request."""
        meta = request.META
        request_id = (meta.get("HTTP_X_REQUEST_ID") or "")[:64] or uuid.uuid4().hex
        forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
        ip = _clean_ip(forwarded.split(",")[0]) if forwarded else _clean_ip(meta.get("REMOTE_ADDR"))
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
