"""WebSocket at /ws: authenticate an SDK key, join the environment's local fan-out, forward events.

Close codes: 4401 bad or missing key, 4403 a key that may not subscribe (management tokens must
name an environment they can view with ?environment=).
"""

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from flagsite.api.authentication import resolve_api_key
from flags.live import watcher

MAX_CLIENT_MESSAGE = 4096


def _credentials(scope):
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers = dict(scope.get("headers") or ())
    raw = headers.get(b"authorization", b"").decode("latin-1").strip()
    if raw.lower().startswith("bearer "):
        key = raw[7:].strip()
    else:
        key = headers.get(b"x-api-key", b"").decode("latin-1").strip() or (query.get("key") or [""])[0]
    return key, query


def _environment_for(key, query):
    """The environment this key may follow, or an error close code."""
    resolved = resolve_api_key(key) if key else None
    if resolved is None:
        return None, 4401
    user, principal = resolved
    if principal.kind == "sdk":
        return principal.environment, None
    wanted = (query.get("environment") or [""])[0]
    if wanted and user.has_perm("flags.view_flag"):
        return wanted, None
    return None, 4403


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
    environment = None

    async def connect(self):
        key, query = _credentials(self.scope)
        if not key and _staff_session(self.scope):  # the dashboard: a logged-in staff browser
            environment, refusal = _session_environment(query)
        else:
            environment, refusal = await database_sync_to_async(_environment_for)(key, query)
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
        except ValueError:
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
