"""Exceptions raised by :class:`wsclient.client.WsClient`."""

from __future__ import annotations

from typing import Any

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
#: Close codes after which retrying cannot help (docs/protocol.md).
TERMINAL_CLOSE_CODES = frozenset({CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN})


class WsClientError(Exception):
    """Base class of the client's errors."""


class TerminalError(WsClientError):
    """The client stopped for good: the server refused it (4401/4403, HTTP 403).

    ``code`` is the WebSocket close code, or ``4403`` for a handshake refused
    with HTTP 403 (a foreign ``Origin``), or ``4401`` when the ticket provider
    reported that the user is not logged in.
    """

    def __init__(self, code: int, reason: str) -> None:
        """Remember the close code and reason."""
        super().__init__(f"connection refused for good: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class NotLoggedInError(WsClientError):
    """Raised by a ticket provider when the credentials are not accepted.

    The client treats it like close code 4401 and stops retrying.
    """


class ConnectionLostError(WsClientError):
    """The connection dropped while a request was waiting for its reply.

    Whether the server processed the request is unknown (for ``publish``: it
    may or may not have been stored).
    """


class ClientClosedError(WsClientError):
    """The client was closed (by :meth:`WsClient.close` or a terminal close)."""


class ServerError(WsClientError):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        """Keep the error frame; ``code`` and ``detail`` are copied out of it."""
        self.frame = frame
        self.code = str(frame.get("code", ""))
        self.detail = str(frame.get("detail", ""))
        super().__init__(f"{self.code}: {self.detail}")
