"""WebSocket URL routes of the ws service.

The router is :class:`~ws_service.url_router.HandOverURLRouter`: Channels'
``URLRouter`` routing (add a route with ``path``/``re_path`` as in Channels)
that hands the connection over to the routed app instead of staying on its
call stack with a copy of the scope.
"""

from __future__ import annotations

from django.urls import path, re_path

from ws_service.asgi_types import Receive, Scope, Send, deny_handshake
from ws_service.consumers import ConnectionConsumer
from ws_service.url_router import HandOverURLRouter


async def unknown_path(scope: Scope, receive: Receive, send: Send) -> None:
    """Any WebSocket path other than /ws/ is refused at the handshake (403)."""
    await deny_handshake(scope, receive, send, "WebSocket refused: only /ws/ accepts WebSockets")


websocket_router = HandOverURLRouter(
    [
        path("ws/", ConnectionConsumer.as_asgi()),
        re_path(r"", unknown_path),  # type: ignore[arg-type]  # URLRouter routes ASGI apps, not views
    ]
)
