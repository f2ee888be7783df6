"""WebSocket URL routes of the ws service."""

from __future__ import annotations

from channels.routing import URLRouter
from django.urls import path, re_path

from ws_service.asgi_types import Receive, Scope, Send, deny_handshake
from ws_service.consumers import ConnectionConsumer


async def unknown_path(scope: Scope, receive: Receive, send: Send) -> None:
    """Any WebSocket path other than /ws/ is refused at the handshake (403)."""
    await deny_handshake(scope, receive, send, "WebSocket refused: only /ws/ accepts WebSockets")


websocket_router = URLRouter(
    [
        path("ws/", ConnectionConsumer.as_asgi()),
        re_path(r"", unknown_path),  # type: ignore[arg-type]  # URLRouter routes ASGI apps, not views
    ]
)
