"""Live flag changes over the server's WebSocket (``/ws``), with reconnects that resume by version.

    ws = WebSocketClient("ws://localhost:3001/ws", api_key="sdk_...")
    ws.on_flag_update(lambda data: print(data["action"], data["flag"]["name"]))
    ws.connect()      # returns at once; a background thread keeps the connection (close() ends it)
"""

import json
import logging
import os
import random
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect as ws_connect

log = logging.getLogger("feature_flag_client.websocket")

UNAUTHORIZED_CLOSE_CODES = (4401, 4403)


class WebSocketClient:
    def __init__(self, url="ws://localhost:3001/ws", api_key=None, *, since=None, min_backoff=0.1,
                 max_backoff=10.0, open_timeout=5.0, daemon=False):
        self.url = url
        self.api_key = api_key if api_key is not None else os.environ.get("FLAGSITE_API_KEY")
        self.version = since
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.daemon = daemon
        self.connected = threading.Event()
        self.last_error = None
        self._flag_callbacks = []
        self._message_callbacks = []
        self._stop = threading.Event()
        self._thread = None
        self._socket = None

    def on_flag_update(self, callback):
        """callback(data) for every ``flag.changed`` event: data["action"], data["flag"], ..."""
        self._flag_callbacks.append(callback)
        return callback

    def on_message(self, callback):
        """callback(data) for every message (flag.changed, snapshot, hello, error)."""
        self._message_callbacks.append(callback)
        return callback

    def connect(self):
        """Start the background connection (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run_forever, name="flagsite-ws",
                                            daemon=self.daemon)
            self._thread.start()
        return self

    def wait_connected(self, timeout=None):
        return self.connected.wait(timeout)

    def close(self):
        self._stop.set()
        socket = self._socket
        if socket is not None:
            socket.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _url(self):
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query))
        if self.version is not None:
            query["since"] = str(self.version)
        return urlunsplit(parts._replace(query=urlencode(query)))

    def run_forever(self):
        """Connect, dispatch, reconnect with jittered backoff until close()."""
        failures = 0
        while not self._stop.is_set():
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
            try:
                with ws_connect(self._url(), additional_headers=headers,
                                open_timeout=self.open_timeout) as socket:
                    self._socket = socket
                    for raw in socket:
                        self._dispatch(raw)
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                self.last_error = exc  # 4503 / 4429: the server asks to come back later (backoff below)
                if code in UNAUTHORIZED_CLOSE_CODES:
                    log.error("flagsite websocket refused the key (close code %s); not retrying", code)
                    break
            except (OSError, InvalidStatus, WebSocketException, TimeoutError) as exc:
                self.last_error = exc
                log.debug("flagsite websocket connection failed: %s", exc)
            finally:
                self._socket = None
                if self.connected.is_set():  # subscribed (hello) before it ended: back off from scratch
                    failures = 0
                self.connected.clear()
            # A server that accepts and then closes at once ("try again later": 4503 database
            # unavailable, 4429 too many connections) is a failure too: the delay keeps growing.
            failures += 1
            delay = random.uniform(0, min(self.max_backoff, self.min_backoff * 2 ** failures))
            self._stop.wait(delay)

    def _dispatch(self, raw):
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("flagsite websocket sent a non-JSON frame")
            return
        if not isinstance(data, dict):
            return
        version = data.get("version")
        if data.get("type") == "hello":
            self.connected.set()  # subscribed: every later change will be delivered
            # Resuming, the frames after the hello bring this client up to its version: a drop
            # before they arrive must resume from where it was. A server behind it (a reset
            # database) is followed from where that server is.
            if isinstance(version, int) and (self.version is None or version < self.version):
                self.version = version
        elif isinstance(version, int):
            self.version = max(self.version or 0, version)
        for callback in self._message_callbacks:
            self._call(callback, data)
        if data.get("type") == "flag.changed":
            for callback in self._flag_callbacks:
                self._call(callback, data)

    @staticmethod
    def _call(callback, data):
        try:
            callback(data)
        except Exception:  # a user's callback must not kill the connection thread
            log.exception("flag update callback failed")
