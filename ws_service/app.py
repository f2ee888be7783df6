"""The ws service's ASGI application. Import only after Django is set up."""

from __future__ import annotations

from channels.routing import ProtocolTypeRouter

from ws_service.auth import TicketOrSessionAuthMiddleware
from ws_service.connection_context import ConnectionContextMiddleware
from ws_service.handshake_limit import HandshakeLimitMiddleware
from ws_service.host import HostValidator
from ws_service.http import health_app
from ws_service.limits import ConnectionLimitMiddleware, FrameLimitMiddleware
from ws_service.origin import OriginValidator
from ws_service.routing import websocket_router


def build_application() -> ProtocolTypeRouter:
    """HTTP: health only. WebSocket: host check, per-address handshake limit, origin check,
    connection id, auth, limits, routes.

    The handshake limit (``ws_service/handshake_limit.py``) refuses a flood
    from one address before any origin, auth or database work. Limits
    (``ws_service/limits.py``): the per-user connection count first, then per
    frame the size limit and the rate limit.
    """
    limited = ConnectionLimitMiddleware(FrameLimitMiddleware(websocket_router))
    return ProtocolTypeRouter(
        {
            "http": health_app,
            "websocket": HostValidator(
                HandshakeLimitMiddleware(
                    OriginValidator(ConnectionContextMiddleware(TicketOrSessionAuthMiddleware(limited)))
                )
            ),
        }
    )
