"""The ws service's ASGI application. Import only after Django is set up."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from ws_service.asgi_types import ASGIApp, Receive, Scope, Send, hands_over, raising
from ws_service.auth import TicketOrSessionAuthMiddleware
from ws_service.connection_context import ConnectionContextMiddleware
from ws_service.handshake_limit import HandshakeLimitMiddleware
from ws_service.host import HostValidator
from ws_service.http import health_app
from ws_service.limits import ConnectionLimitMiddleware, FrameLimitMiddleware
from ws_service.origin import OriginValidator
from ws_service.routing import websocket_router


class ScopeTypeRouter:
    """Channels' ``ProtocolTypeRouter`` that hands the connection over to the app for its scope type.

    It returns that app's coroutine instead of awaiting it
    (:func:`~ws_service.asgi_types.hands_over`), so no router frame, and no
    reference to the server's original scope, stays for the connection's life
    (the stack's ``HostValidator`` works on its own copy). As the outermost
    app it never raises when called: an error of a handed-over check is
    raised when the returned awaitable runs, in the connection's task.
    """

    def __init__(self, application_mapping: Mapping[str, ASGIApp]) -> None:
        self.application_mapping = application_mapping

    @hands_over
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        try:
            application = self.application_mapping.get(scope["type"])
            if application is None:
                raise ValueError(f"No application configured for scope type {scope['type']!r}")
            return application(scope, receive, send)
        except Exception as exc:  # re-raised in the task, where the server handles it
            return raising(exc)


def build_application() -> ScopeTypeRouter:
    """HTTP: health only. WebSocket: host check, per-address handshake limit, origin check,
    connection id, auth, limits, routes.

    The handshake limit (``ws_service/handshake_limit.py``) refuses a flood
    from one address before any origin, auth or database work. Limits
    (``ws_service/limits.py``): the per-user connection count first, then per
    frame the size limit and the rate limit.
    """
    limited = ConnectionLimitMiddleware(FrameLimitMiddleware(websocket_router))
    return ScopeTypeRouter(
        {
            "http": health_app,
            "websocket": HostValidator(
                HandshakeLimitMiddleware(
                    OriginValidator(ConnectionContextMiddleware(TicketOrSessionAuthMiddleware(limited)))
                )
            ),
        }
    )
