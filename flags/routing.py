from django.urls import path

from flags.consumers import FlagConsumer

websocket_urlpatterns = [path("ws", FlagConsumer.as_asgi())]
