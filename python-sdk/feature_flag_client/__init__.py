"""Flagsite Python SDK: REST client, live updates, local evaluation and the rule engine."""

from .client import FeatureFlagClient
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FlagsiteConnectionError,
    FlagsiteError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
)
from .local import LocalEvaluator, LocalFeatureFlagClient
from .testing import FakeFlagClient
from .websocket import WebSocketClient

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "FakeFlagClient",
    "FeatureFlagClient",
    "FlagsiteConnectionError",
    "FlagsiteError",
    "LocalEvaluator",
    "LocalFeatureFlagClient",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "WebSocketClient",
]
