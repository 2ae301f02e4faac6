"""HMAC-SHA256 under the audit key (settings.FLAGS_AUDIT_KEY, kept outside the database).

One key, separate subkeys per use, so a MAC made for one purpose never verifies as another: the
chain's entry hashes, the seal on where the keyed part of the chain begins, and the checkpoints.
"""

import functools
import hashlib
import hmac
import json

from django.conf import settings


@functools.lru_cache(maxsize=32)
def _subkey(purpose, key):
    return hmac.new(key.encode(), f"flagsite-audit:{purpose}".encode(), hashlib.sha256).digest()


def mac(purpose, message, key=None):
    key = settings.FLAGS_AUDIT_KEY if key is None else key
    return hmac.new(_subkey(purpose, key), message.encode(), hashlib.sha256).hexdigest()


def matches(expected, given):
    return hmac.compare_digest(expected, given or "")


def key_id(key=None):
    """A public fingerprint of the key, written into checkpoints: names which key signed them."""
    return mac("key-id", "", key)[:16]


def canonical_json(data):
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
