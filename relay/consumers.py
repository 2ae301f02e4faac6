"""/ws/relay: the stream a relay follows (relay/follower.py). Relay tokens only.

Query: ``?since=<env>:<version>,<env>:<version>`` (what the relay holds) and ``&keys=<version>``.
The server answers ``hello``, then for each environment the token may read a ``snapshot`` message
with the full payload unless the relay already holds that version (a resume costs nothing), then
``keys`` unless the relay's key table is current, then ``synced``. A relay serving a relay also
sends ``upstream`` (``syncedAt``: when its own data was last current, null while it is) whenever
that changes, so staleness shows at the end of a chain too. After that: a ``snapshot`` for
every version an environment moves to (from this process's watcher, flags/live.py: the same
fan-out /ws clients get) and a ``keys`` message whenever the key table changes (checked every
RELAY_KEYS_POLL_SECONDS), and the watcher's pings. Payloads are whole snapshots, so a relay that
missed versions (a gap) is whole again with the next one.

Close codes as /ws: 4401 missing, invalid or (checked every poll) revoked token, 4403 a key that is not a relay token, 4503 the
database is unavailable for a token this process never resolved.
"""

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from flags.consumers import _client_ip, _credentials, log_refusal
from flags.live import watcher
from flagsite.api.authentication import resolve_api_key
from flagsite.api.throttling import AuthThrottled
from relay import upstream

logger = logging.getLogger(__name__)
RELAY_KEYS_POLL_SECONDS = 0.2


def _parse_since(query):
    since = {}
    for part in ",".join(query.get("since") or ()).split(","):
        environment, _, version = part.rpartition(":")
        if environment and version.isdigit():
            since[environment] = int(version)
    return since


class _Tap:
    """Registered with the watcher like a /ws client; turns its events into snapshot pushes."""

    delivered = 0  # no resume: every broadcast

    def __init__(self, consumer):
        self.consumer = consumer

    async def send(self, text_data=None, bytes_data=None):
        await self.consumer.on_watcher_frame(text_data)


class RelayConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = None
    principal = None

    async def connect(self):
        key, query = _credentials(self.scope)
        try:
            resolved = await database_sync_to_async(resolve_api_key)(key, _client_ip(self.scope)) if key else None
        except DatabaseError:
            return await self._refuse(4503, "unavailable", "The database is unavailable; reconnect shortly.")
        except AuthThrottled as exc:
            return await self._refuse(4429, "throttled", f"Too many failed authentications; retry in {exc.wait} s.")
        if resolved is None:
            log_refusal(self.scope, key, "invalid_key" if key else "missing_key")
            return await self._refuse(4401, "not_authenticated", "A valid relay token is required "
                                      "(Authorization: Bearer <token>).")
        principal = resolved[1]
        if principal.kind != "relay":
            log_refusal(self.scope, key, "not_permitted")
            return await self._refuse(4403, "permission_denied", "Only relay tokens may follow /ws/relay.")
        self.principal = principal
        self.raw_key = key
        self.upstream_sent = None  # relay mode: the syncedAt last told to this relay
        self.sent = _parse_since(query)  # environment -> version the relay holds
        self.keys_sent = (query.get("keys") or [""])[0] or None
        self.lock = asyncio.Lock()
        self.environments = []
        self.taps = {}
        await watcher.start()
        await self.accept()
        await self.send_json({"type": "hello", "upstream": "relay" if upstream.relay_state.enabled() else "primary",
                              "project": principal.project})
        if await self.sync() is False:
            return
        await self.send_json({"type": "synced"})
        self.poller = asyncio.get_running_loop().create_task(self.poll())

    async def _refuse(self, code, error, message):
        await self.accept()
        await self.send_json({"type": "error", "error": {"code": error, "message": message}})
        await self.close(code=code)

    async def sync(self):
        """Push every environment whose version differs from what the relay holds, and the keys.
        False when the relay token is no longer valid (revoked: the stream closes)."""
        resolved = await database_sync_to_async(resolve_api_key)(self.raw_key)
        if resolved is None or resolved[1].kind != "relay":
            await self.send_json({"type": "error", "error": {"code": "not_authenticated",
                                                             "message": "The relay token was revoked."}})
            await self.close(code=4401)
            return False
        if upstream.relay_state.enabled():  # a chain: say how current our own data is
            synced_at = upstream.relay_state.state.last_synced_at()
            if synced_at != self.upstream_sent:
                self.upstream_sent = synced_at
                await self.send_json({"type": "upstream", "syncedAt": synced_at})
        environments = await database_sync_to_async(upstream.allowed_environments)(self.principal)
        for environment in environments:
            if environment not in self.taps:
                tap = self.taps[environment] = _Tap(self)
                watcher.register(environment, tap)
        for environment in [env for env in self.taps if env not in environments]:
            watcher.unregister(environment, self.taps.pop(environment))
            await self.send_json({"type": "removed", "environment": environment})
            self.sent.pop(environment, None)
        self.environments = environments
        for environment in environments:
            await self.push(environment)
        rows = await database_sync_to_async(upstream.key_rows)(self.principal)
        version = upstream.keys_version(rows)
        if version != self.keys_sent:
            self.keys_sent = version
            await self.send_json({"type": "keys", "version": version, "keys": rows})

    async def push(self, environment):
        payload = watcher.feed.current(environment)
        async with self.lock:
            if payload is None or self.sent.get(environment) == payload["version"]:
                return
            self.sent[environment] = payload["version"]
            await self.send_json({"type": "snapshot", "payload": payload})

    async def on_watcher_frame(self, text):
        if text == '{"type":"ping"}':
            if next(iter(self.taps), None) is not None:  # once per ping round, not once per environment
                await self.send(text_data=text)
            return
        try:
            environment = json.loads(text).get("environment")
        except ValueError:
            return
        if environment in self.taps:
            await self.push(environment)

    async def poll(self):
        """Key changes (a revoke must reach relays within a second), new environments, and any
        version move a lost event would have hidden."""
        while True:
            await asyncio.sleep(RELAY_KEYS_POLL_SECONDS)
            try:
                if await self.sync() is False:
                    return
            except asyncio.CancelledError:
                raise
            except DatabaseError as exc:  # keep the stream; the next poll retries
                logger.warning("relay stream: key check failed: %s", exc)
            except Exception:
                logger.exception("relay stream sync failed")
                await asyncio.sleep(1.0)

    async def disconnect(self, code):
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
        for environment, tap in list(getattr(self, "taps", {}).items()):
            watcher.unregister(environment, tap)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data and '"ping"' in text_data[:64]:
            await self.send_json({"type": "pong"})
            return
        await self.send_json({"type": "error", "error": {"code": "bad_message",
                                                         "message": "only {\"type\": \"ping\"} is accepted"}})

    async def send_json(self, data):
        await self.send(text_data=json.dumps(data, separators=(",", ":")))
