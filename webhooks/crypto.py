"""Webhook secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under a key kept
outside the database: FLAGS_WEBHOOK_KEY, else derived from SECRET_KEY. A database dump alone does
not reveal the secrets. FLAGS_WEBHOOK_KEY may list several keys, comma-separated: the first
encrypts, any decrypts (rotate by putting the new one first, then re-saving or rotating secrets)."""

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings


def _fernet():
    keys = [key.strip() for key in (settings.FLAGS_WEBHOOK_KEY or "").split(",") if key.strip()]
    keys = keys or [settings.SECRET_KEY]
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"flagsite-webhook-secret:" + key.encode())
                                                         .digest())) for key in keys])


def new_secret():
    """A Standard Webhooks secret: "whsec_" + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def encrypt(secret):
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token):
    return _fernet().decrypt(token.encode()).decode()
