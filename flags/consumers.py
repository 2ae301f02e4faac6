"""WebSocket at /ws: authenticate an SDK key, join the environment's local fan-out, forward events.

Close codes: 4401 bad or missing key, 4403 a key that may not subscribe (management tokens must
name an environment they can view with ?environment=).

A refused handshake is logged like a failed REST authentication: one WARNING on the
``flagsite.api.authentication`` logger, "authentication failed: ..." with the key's fingerprint
(sha256 prefix, the REST API's too, so guesses can be correlated across transports), the client
address and, as structured fields (``extra``, printed by LOG_FORMAT=json), ``transport``,
``reason``, ``key_fingerprint``, ``key_prefix`` (at most 8 characters and a quarter of the key) and
``client_ip``. Never the key itself.
"""

import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from flagsite.api.authentication import hash_key, resolve_api_key
from flags.live import watcher

MAX_CLIENT_MESSAGE = 4096
auth_logger = logging.getLogger("flagsite.api.authentication")  # where REST logs failed authentications
REASONS = {
    "missing_key": "no API key",
    "invalid_key": "invalid or revoked API key",
    "not_permitted": "API key may not follow flag changes",
}


def _credentials(scope):
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers = dict(scope.get("headers") or ())
    raw = headers.get(b"authorization", b"").decode("latin-1").strip()
    if raw.lower().startswith("bearer "):
        key = raw[7:].strip()
    else:
        key = headers.get(b"x-api-key", b"").decode("latin-1").strip() or (query.get("key") or [""])[0]
    return key, query


def _check_key(key, query):
    """The environment this key may follow: (environment, None, None), or (None, close code,
    reason) for a refused key."""
    resolved = resolve_api_key(key) if key else None
    if resolved is None:
        return None, 4401, "invalid_key" if key else "missing_key"
    user, principal = resolved
    if principal.kind == "sdk":
        return principal.environment, None, None
    wanted = (query.get("environment") or [""])[0]
    if wanted and user.has_perm("flags.view_flag"):
        return wanted, None, None
    return None, 4403, "not_permitted"


def _client_ip(scope):
    client = scope.get("client") or ()
    return client[0] if client else None


def log_refusal(scope, key, reason):
    """The failed-authentication record (module docstring): never the key, at most a short prefix."""
    fingerprint = hash_key(key)[:12] if key else ""
    ip = _client_ip(scope)
    auth_logger.warning(
        "authentication failed: %s transport=websocket fingerprint=%s path=%s ip=%s",
        REASONS[reason], fingerprint or "-", scope.get("path", "/ws"), ip,
        extra={"transport": "websocket", "reason": reason, "key_fingerprint": fingerprint,
               "key_prefix": key[:min(8, len(key) // 4)] if key else "", "client_ip": ip},
    )


def _staff_session(scope):
    """A staff user logged in through Django's session (AuthMiddlewareStack in flagsite/asgi.py);
    browsers only, so the origin check in asgi.py applies to these handshakes."""
    user = scope.get("user")
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)


def _session_environment(query):
    from django.conf import settings

    wanted = (query.get("environment") or [""])[0] or getattr(settings, "FLAGS_DEFAULT_ENVIRONMENT", "development")
    return wanted, None


class FlagConsumer(AsyncWebsocketConsumer):
    # No channel-layer channel per socket: events come from this process's watcher (flags/live.py).
    # With one, every socket would also wait on Redis, and a Redis outage would close them all.
    channel_layer_alias = None
    environment = None

    async def connect(self):
        key, query = _credentials(self.scope)
        if not key and _staff_session(self.scope):  # the dashboard: a logged-in staff browser
            environment, refusal = _session_environment(query)
        else:
            try:
                environment, refusal, reason = await database_sync_to_async(_check_key)(key, query)
            except DatabaseError:  # a key this process never resolved, with PostgreSQL down
                await self.accept()
                await self.send_error("unavailable", "The database is unavailable; reconnect shortly.")
                await self.close(code=1013)  # "try again later": SDKs reconnect with backoff
                return
            if refusal:
                log_refusal(self.scope, key, reason)
        await watcher.start()  # before accepting: the baseline must predate anything the client sees
        await self.accept()
        if refusal:
            await self.send_json({"type": "error", "error": {
                "code": "not_authenticated" if refusal == 4401 else "permission_denied",
                "message": "A valid SDK key is required (Authorization: Bearer <key> or ?key=)."
                if refusal == 4401 else "This key cannot follow flag changes."}})
            await self.close(code=refusal)
            return
        payload = watcher.feed.current(environment)
        if payload is None:
            await self.close(code=4404)
            return
        self.environment = environment
        watcher.register(environment, self)
        await self.send_json({"type": "hello", "environment": environment, "version": payload["version"]})
        since = (query.get("since") or [""])[0]
        if since:
            await self._resume(since, payload)

    async def _resume(self, since, payload):
        try:
            version = int(since)
        except ValueError:
            await self.send_error("bad_since", "since must be an integer version")
            return
        events = watcher.feed.since(self.environment, version)
        if events is None:
            await self.send_json({"type": "snapshot", **payload})
            return
        for event in events:
            await self.send_json(event)

    async def disconnect(self, code):
        if self.environment is not None:
            watcher.unregister(self.environment, self)

    async def receive(self, text_data=None, bytes_data=None):
        """Clients may ping; anything else gets an error frame, never a crash."""
        if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE:
            await self.send_error("bad_message", "messages must be JSON text under 4 KiB")
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # "[[[[..." nested past the recursion limit fits in 4 KiB
            await self.send_error("bad_message", "messages must be JSON")
            return
        if isinstance(message, dict) and message.get("type") == "ping":
            await self.send_json({"type": "pong", "version": self._version()})
        else:
            await self.send_error("bad_message", "unknown message; send {\"type\": \"ping\"}")

    def _version(self):
        payload = watcher.feed.current(self.environment)
        return payload["version"] if payload else None

    async def send_json(self, data):
        await self.send(text_data=json.dumps(data, separators=(",", ":")))

    async def send_error(self, code, message):
        await self.send_json({"type": "error", "error": {"code": code, "message": message}})
