from django.urls import path

from flags.consumers import FlagConsumer
from relay.consumers import RelayConsumer

websocket_urlpatterns = [path("ws", FlagConsumer.as_asgi()), path("ws/relay", RelayConsumer.as_asgi())]
