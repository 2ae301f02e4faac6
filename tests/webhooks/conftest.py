"""A real HTTP receiver on 127.0.0.1 (a threaded http.server) that answers from a script and keeps
what it got; subscriptions built through the services."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook as Verifier

from audit.actor import Actor
from webhooks import services

SYSTEM = Actor.system("tests")
HANG = "hang"  # answer nothing until the test ends (the sender's timeout fires first)


class Receiver:
    """``script``: what to answer to each request in turn (a status code or HANG); the last one
    repeats. ``received``: (headers, raw body) of every request."""

    def __init__(self):
        self.script, self.received, self.released = [200], [], threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                answer = receiver.script[min(len(receiver.received) - 1, len(receiver.script) - 1)]
                if answer == HANG:
                    receiver.released.wait(10)
                    return
                payload = json.dumps({"ok": answer < 400, "n": len(receiver.received)}).encode()
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def verified(self, secret):
        """Every message checked with the library's own verifier; their parsed bodies."""
        return [Verifier(secret).verify(body, headers) for headers, body in self.received]

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def subscribe(db, receiver):
    def make(events=("flag.killed",), url=None, **kwargs):
        return services.webhook_create(actor=SYSTEM, url=url or receiver.url, events=list(events), **kwargs)
    return make


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the embedded mode on both legs (the worker test says otherwise)
    settings.FLAGS_WEBHOOK_BACKOFF_SECONDS = 10
    settings.FLAGS_WEBHOOK_BACKOFF_MAX_SECONDS = 80
    settings.FLAGS_WEBHOOK_TIMEOUT_SECONDS = 2
