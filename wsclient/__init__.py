"""An asyncio client (and CLI) for the /ws/ protocol of docs/protocol.md.

Depends only on ``websockets`` and the standard library.
"""

from wsclient.backoff import Backoff, ceiling, full_jitter
from wsclient.client import TicketProvider, WsClient
from wsclient.errors import (
    ClientClosedError,
    ConnectionLostError,
    NotLoggedInError,
    ServerError,
    TerminalError,
    WsClientError,
)
from wsclient.events import Event, EventStream
from wsclient.web import WebLogin

__all__ = [
    "Backoff",
    "ClientClosedError",
    "ConnectionLostError",
    "Event",
    "EventStream",
    "NotLoggedInError",
    "ServerError",
    "TerminalError",
    "TicketProvider",
    "WebLogin",
    "WsClient",
    "WsClientError",
    "ceiling",
    "full_jitter",
]
