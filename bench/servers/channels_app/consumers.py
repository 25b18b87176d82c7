"""Echo and broadcast consumers, once sync (WebsocketConsumer) and once async.

The broadcast consumers put every connection of ``room/<name>`` in the group
``room.<name>`` at connect and group_send every frame they receive, so each
frame reaches every connection on the URL, the sender included.
"""

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer


class SyncEchoConsumer(WebsocketConsumer):
    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=text_data, bytes_data=bytes_data)


class AsyncEchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)


class SyncBroadcastConsumer(WebsocketConsumer):
    def connect(self):
        self.group = f"room.{self.scope['url_route']['kwargs']['room']}"
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        self.accept()

    def disconnect(self, code):
        async_to_sync(self.channel_layer.group_discard)(self.group, self.channel_name)

    def receive(self, text_data=None, bytes_data=None):
        async_to_sync(self.channel_layer.group_send)(
            self.group, {"type": "room.message", "text": text_data, "bytes": bytes_data}
        )

    def room_message(self, event):
        self.send(text_data=event["text"], bytes_data=event["bytes"])


class AsyncBroadcastConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.group = f"room.{self.scope['url_route']['kwargs']['room']}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        await self.channel_layer.group_send(
            self.group, {"type": "room.message", "text": text_data, "bytes": bytes_data}
        )

    async def room_message(self, event):
        await self.send(text_data=event["text"], bytes_data=event["bytes"])
