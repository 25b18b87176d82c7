"""The ASGI application: /socket/{sync,async}/echo, .../room/<name> and .../chat/<name>."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channels_app.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path

from . import consumers

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": URLRouter([
        re_path(r"^socket/sync/echo$", consumers.SyncEchoConsumer.as_asgi()),
        re_path(r"^socket/async/echo$", consumers.AsyncEchoConsumer.as_asgi()),
        re_path(r"^socket/sync/room/(?P<room>\w+)$", consumers.SyncBroadcastConsumer.as_asgi()),
        re_path(r"^socket/async/room/(?P<room>\w+)$", consumers.AsyncBroadcastConsumer.as_asgi()),
        re_path(r"^socket/sync/chat/(?P<room>\w+)$", consumers.SyncChatConsumer.as_asgi()),
        re_path(r"^socket/async/chat/(?P<room>\w+)$", consumers.AsyncChatConsumer.as_asgi()),
    ]),
})
