"""Gives every WebSocket connection an id, in its scope and in log records."""

from __future__ import annotations

from shared.log_context import new_context_id, use_connection_id
from ws_service.asgi_types import ASGIApp, Receive, Scope, Send


class ConnectionContextMiddleware:
    """Sets ``scope["connection_id"]`` and publishes it for the connection's life."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.inner(scope, receive, send)
            return
        connection_id = new_context_id()
        with use_connection_id(connection_id):
            await self.inner(dict(scope, connection_id=connection_id), receive, send)
