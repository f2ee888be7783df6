"""The stock stack: Channels' ``AuthMiddlewareStack`` + a plain ``AsyncWebsocketConsumer`` + stock channels-redis.

Run under Daphne with ``DJANGO_SETTINGS_MODULE=bench.servers.stock_settings``.
The consumer is what a Channels tutorial writes: anonymous users are closed
with 4401; ``ping`` gets ``pong``; ``subscribe`` adds the topic's group;
anything else is echoed; group events of type ``topic.message`` are forwarded.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.servers.stock_settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from bench.servers.bare_asgi import Receive, Scope, Send  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no type hints
    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.accept()
        await self.send(text_data=json.dumps({"type": "welcome", "user": {"id": user.pk}}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame: dict[str, Any] = json.loads(text_data or "{}")
        if frame.get("type") == "ping":
            await self.send(text_data=json.dumps({"type": "pong"}))
        elif frame.get("type") == "subscribe":
            await self.channel_layer.group_add(str(frame["topic"]), self.channel_name)
            await self.send(text_data=json.dumps({"type": "subscribed", "topic": frame["topic"]}))
        else:
            await self.send(text_data=text_data)

    async def topic_message(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "message", "topic": event["topic"], "text": event["text"]}))


async def health(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\n"})


application = ProtocolTypeRouter(
    {"http": health, "websocket": AuthMiddlewareStack(URLRouter([path("ws/", EchoConsumer.as_asgi())]))}
)
