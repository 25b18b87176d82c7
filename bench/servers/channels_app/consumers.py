"""Echo, broadcast and chat consumers, once sync (WebsocketConsumer) and once async.

The broadcast consumers put every connection of ``room/<name>`` in the group
``room.<name>`` at connect and group_send every frame they receive, so each
frame reaches every connection on the URL, the sender included. The chat
consumers do the same after saving each message through the ORM: the sync
one directly (it runs in a thread already), the async one through
``database_sync_to_async``, as Channels' documentation says to.
"""

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from chat.models import Message


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


class SyncChatConsumer(SyncBroadcastConsumer):
    def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat.{self.room}"
        async_to_sync(self.channel_layer.group_add)(self.group, self.channel_name)
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        Message.objects.create(room=self.room, body=text_data)
        super().receive(text_data=text_data)


class AsyncChatConsumer(AsyncBroadcastConsumer):
    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = f"chat.{self.room}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    @database_sync_to_async
    def save(self, text):
        Message.objects.create(room=self.room, body=text)

    async def receive(self, text_data=None, bytes_data=None):
        await self.save(text_data)
        await super().receive(text_data=text_data)
