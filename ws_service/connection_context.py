"""Gives every WebSocket connection an id, in its scope and in log records."""

from __future__ import annotations

from shared.log_context import context_id, context_kind, new_context_id
from ws_service.asgi_types import ASGIApp, Receive, Scope, Send


class ConnectionContextMiddleware:
    """Sets ``scope["connection_id"]`` and publishes it for the connection's life.

    The ContextVars are set and reset here directly (what
    ``shared.log_context.use_connection_id`` does) so that an idle connection
    holds no context-manager object and generator frame for its whole life.
    The id is added to the scope in place, not to a copy: the stack's
    outermost middleware (``HostValidator``) made the scope this connection's
    own, and one more copy would stay alive as long as the connection.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.inner(scope, receive, send)
            return
        connection_id = new_context_id()
        id_token = context_id.set(connection_id)
        kind_token = context_kind.set("connection")
        try:
            scope["connection_id"] = connection_id
            await self.inner(scope, receive, send)
        finally:
            context_kind.reset(kind_token)
            context_id.reset(id_token)
