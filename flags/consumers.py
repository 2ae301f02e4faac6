"""WebSocket at /ws: authenticate an SDK key, join the environment's local fan-out, forward events.

Close codes: 4401 bad or missing key, 4403 a key that may not subscribe (management tokens must
name an environment they can view with ?environment=; ?project=<key> picks one of the projects the
token's user holds a role in, as /api/projects/<key>/ does in REST, else the project the token is
narrowed to, else the default one), 4404 no such environment (a project the token may not see, or
another than the one it is narrowed to, answers exactly as one that does not exist), 4429 too many
connections for this key in this process (FLAGS_WS_MAX_CONNECTIONS_PER_KEY) or too many failed keys
from this address (FLAGS_AUTH_FAILURE_LIMIT), 4503 the database is unavailable for a key this
process never resolved. 4429 and 4503 mean "try again later": the SDK reconnects with backoff. (Not
1013: daphne refuses to send it and closes with 1011 and a traceback instead.)

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

from audit.actor import client_ip
from flagsite.api.authentication import hash_key, resolve_api_key
from flagsite.api.throttling import AuthThrottled
from flags.live import watcher
from projects import policy, scope
from projects.models import DEFAULT

MAX_CLIENT_MESSAGE = 4096
TRY_AGAIN_LATER = 4503  # the database is unavailable: reconnect with backoff
TOO_MANY = 4429  # too many connections for this key, or too many failed keys from this address
_open_per_key = {}  # API key id -> open sockets in this process (the event loop's thread only)
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


def _check_key(key, query, ip=None):
    """The environment this key may follow: (environment, None, key id), or (None, close code,
    reason) for a refused key. AuthThrottled when ``ip`` sent too many failed keys."""
    resolved = resolve_api_key(key, ip) if key else None
    if resolved is None:
        return None, 4401, "invalid_key" if key else "missing_key"
    user, principal = resolved
    if principal.kind == "sdk":
        return principal.environment, None, principal.id
    wanted = (query.get("environment") or [""])[0]
    named = (query.get("project") or [""])[0]  # ?project=<key>: the path's <project> of the REST API
    project = named or principal.project or DEFAULT  # else the token's project, or the default one
    if (named and not policy.may_see(principal, project, user)) or policy.hidden_from(user, project):
        return None, None, principal.id  # as for a project (an environment) that does not exist: 4404
    with scope.using(project):
        if wanted and user.has_perm("flags.view_flag"):  # a member: their role there
            return scope.ref(project, wanted), None, principal.id
    return None, 4403, "not_permitted"


def _client_ip(scope):
    """The client's address by the rule HTTP uses (audit.actor.client_ip): the socket's peer, or
    under NUM_PROXIES the address the outermost trusted proxy put in X-Forwarded-For, so audit
    entries, logs and failed-key buckets behind nginx name the client, not the proxy."""
    client = scope.get("client") or ()
    forwarded = [value.decode("latin-1") for name, value in scope.get("headers") or () if name == b"x-forwarded-for"]
    return client_ip({"REMOTE_ADDR": client[0] if client else None, "HTTP_X_FORWARDED_FOR": ",".join(forwarded)})


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
    """A dashboard user (staff or a project member: projects.policy.may_use_dashboard) logged in
    through Django's session (AuthMiddlewareStack in flagsite/asgi.py); browsers only, so the origin
    check in asgi.py applies to these handshakes."""
    return policy.may_use_dashboard(scope.get("user"))


def _session_environment(query, session_scope):
    """The dashboard's socket follows an environment of the session's project (the one its pages
    show: projects.scope.SessionProjectMiddleware), never another project's: ``?environment=`` is a
    plain key of that project (a dotted "key" names no environment: 4404). (ref, None), or
    (None, 4403) when the user may not view flags there."""
    from django.conf import settings

    user = session_scope.get("user")
    session = session_scope.get("session")
    project = policy.dashboard_project(user, session.get(scope.SESSION_KEY) if session is not None else None)
    with scope.using(project):
        if not user.has_perm("flags.view_flag"):
            return None, 4403
    wanted = (query.get("environment") or [""])[0] or getattr(settings, "FLAGS_DEFAULT_ENVIRONMENT", "development")
    return scope.ref(project, wanted), None


class FlagConsumer(AsyncWebsocketConsumer):
    # No channel-layer channel per socket: events come from this process's watcher (flags/live.py).
    # With one, every socket would also wait on Redis, and a Redis outage would close them all.
    channel_layer_alias = None
    environment = None
    key_id = None  # counted in _open_per_key while open
    delivered = 0  # the version this client was last sent by a resume: broadcasts up to it skip it

    async def connect(self):
        key, query = _credentials(self.scope)
        if not key and await database_sync_to_async(_staff_session)(self.scope):  # the dashboard's browser
            environment, refusal = await database_sync_to_async(_session_environment)(query, self.scope)
        else:
            try:
                environment, refusal, detail = await database_sync_to_async(_check_key)(
                    key, query, _client_ip(self.scope))
            except DatabaseError:  # a key this process never resolved, with PostgreSQL down
                await self.refuse(TRY_AGAIN_LATER, "unavailable", "The database is unavailable; reconnect shortly.")
                return
            except AuthThrottled as exc:  # no lookup, no log line (one summary per window)
                await self.refuse(TOO_MANY, "throttled", f"Too many failed authentications from this address; "
                                  f"retry in {exc.wait} s.")
                return
            if refusal:
                log_refusal(self.scope, key, detail)
            elif not self._count_key(detail):
                await self.refuse(TOO_MANY, "too_many_connections", "This key has too many open connections "
                                  "here (FLAGS_WS_MAX_CONNECTIONS_PER_KEY); retry later or elsewhere.")
                return
        await watcher.start()  # before accepting: the baseline must predate anything the client sees
        await self.accept()
        if refusal:
            await self.send_json({"type": "error", "error": {
                "code": "not_authenticated" if refusal == 4401 else "permission_denied",
                "message": "A valid SDK key is required (Authorization: Bearer <key> or ?key=)."
                if refusal == 4401 else "This key cannot follow flag changes."}})
            await self.close(code=refusal)
            return
        payload = watcher.feed.current(environment) if environment else None
        if payload is None:
            await self.close(code=4404)
            return
        self.environment = environment
        hello = {"type": "hello", "environment": environment, "version": payload["version"]}
        since = (query.get("since") or [""])[0]
        try:
            version = int(since) if since else None
        except ValueError:
            version = None
        if version is None:  # a new follower: every change after its hello
            watcher.register(environment, self)
            await self.send_json(hello)
            if since:  # not a version: followed as a new client, told why
                await self.send_error("bad_since", "since must be an integer version")
            return
        await self.send_json(hello)
        await self._resume(version)

    async def _resume(self, version):
        """Send what the client missed after `version`, then follow live. The feed moves ahead of
        the broadcasts (the watcher's thread updates it, the loop broadcasts after), so this joins
        the broadcasts only once the feed holds nothing newer than what was sent (no await between
        that check and register), and `delivered` keeps a broadcast of a change already sent here
        from arriving twice (the SDK found it: "killed" heard twice after a reconnect)."""
        while True:
            events = watcher.feed.since(self.environment, version)
            if events is None:  # history no longer reaches back that far: the whole state
                payload = watcher.feed.current(self.environment)
                events = [{"type": "snapshot", **payload}] if payload else []
            if not events:
                break
            version = events[-1]["version"]
            for event in events:
                await self.send_json(event)
        current = watcher.feed.current(self.environment)
        # min: a since ahead of this server (its database was reset) must not mute what comes next
        self.delivered = min(version, current["version"]) if current else 0
        watcher.register(self.environment, self)

    def _count_key(self, key_id):
        """Hold one of this key's connection slots; False when it has none left. No await in here:
        the check and the count happen together on the event loop."""
        from django.conf import settings

        limit = settings.FLAGS_WS_MAX_CONNECTIONS_PER_KEY
        open_now = _open_per_key.get(key_id, 0)
        if limit > 0 and open_now >= limit:
            return False
        _open_per_key[key_id] = open_now + 1
        self.key_id = key_id
        return True

    async def refuse(self, code, error, message):
        """Accept, say why in an error frame, close with an application code (4xxx: daphne sends those)."""
        await self.accept()
        await self.send_error(error, message)
        await self.close(code=code)

    async def disconnect(self, code):
        if self.environment is not None:
            watcher.unregister(self.environment, self)
        if self.key_id is not None:
            left = _open_per_key.pop(self.key_id, 1) - 1
            if left > 0:
                _open_per_key[self.key_id] = left
            self.key_id = None

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
