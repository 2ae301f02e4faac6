"""ASGI entry point: Django for HTTP, Channels for the /ws WebSocket (daphne serves both)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flagsite.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (after Django is set up)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from flags.routing import websocket_urlpatterns  # noqa: E402
from flagsite.ops.startup import prepare_web_process  # noqa: E402

prepare_web_process()


def browser_origin_validator(app):
    """AllowedHostsOriginValidator for browsers; SDK clients send no Origin and are let through.

    Channels 4 refuses a handshake without an Origin header, but only browsers send one (and only
    browsers need cross-site protection); servers using the SDK authenticate with their key."""
    validated = AllowedHostsOriginValidator(app)

    async def application(scope, receive, send):
        has_origin = any(name == b"origin" for name, _ in scope.get("headers", ()))
        return await (validated if has_origin else app)(scope, receive, send)

    return application


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # AuthMiddlewareStack: the dashboard's staff session may follow /ws too (keys work as before)
        "websocket": browser_origin_validator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
