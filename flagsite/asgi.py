"""ASGI entry point, the one web process (granian, README command 1 and production): warm
evaluations on the fast lane (flags/fastlane.py), every other HTTP request through Django, the /ws
WebSocket through Channels."""

import os
from urllib.parse import urlparse

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (after Django is set up)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from flags import fastlane  # noqa: E402
from flags.routing import websocket_urlpatterns  # noqa: E402
from flagsite.ops.startup import prepare_web_process  # noqa: E402

prepare_web_process()


def browser_origin_validator(app):
    """Refuse a browser's handshake from an origin outside ALLOWED_HOSTS; SDK clients send no Origin
    and are let through (they authenticate with their key; only browsers need cross-site protection).

    Channels' own AllowedHostsOriginValidator refuses through a consumer that then waits for a
    websocket.disconnect granian never sends for a refused handshake, so the refusal hung (with the
    Redis channel layer) instead of answering 403: refuse here, in three messages, and return."""
    checker = AllowedHostsOriginValidator(app)

    async def application(scope, receive, send):
        origin = next((value for name, value in scope.get("headers", ()) if name == b"origin"), None)
        if origin is None or checker.valid_origin(urlparse(origin.decode("latin1"))):
            return await app(scope, receive, send)
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403

    return application


async def lifespan(scope, receive, send):
    """Start-up happened at import (prepare_web_process); acknowledge the server's lifespan events.
    Without a broker this worker also sends webhooks (webhooks/runner.py) and applies scheduled
    changes (changes/runner.py)."""
    from changes import runner as change_runner
    from webhooks import runner as webhook_runner

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            webhook_runner.start()  # neither starts in relay mode (flagsite/ops/background.py)
            change_runner.start()
            if settings.FLAGS_RELAY:  # an edge relay: follow the upstream (relay/follower.py)
                from relay.follower import follower

                follower.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if settings.FLAGS_RELAY:
                from relay.follower import follower
                from relay.outbox import outbox

                follower.stop()
                outbox.flush_at_exit()
            webhook_runner.stop()
            change_runner.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": fastlane.asgi(django_asgi_app),
        "lifespan": lifespan,
        # AuthMiddlewareStack: the dashboard's staff session may follow /ws too (keys work as before)
        "websocket": browser_origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
