"""A per-connection budget of unsent output (``WS_MAX_PENDING_BYTES``) on Daphne and Uvicorn.

A client that stops reading (or reads slower than its topics publish) makes
the server queue its frames in memory. Daphne has no write backpressure: the
application's ``send`` never waits, every frame lands in the Twisted
transport's buffer, and the process grows until it is killed. Uvicorn waits
for its transport to drain, which bounds memory but leaves the connection's
consumer stuck behind a reader that may never read.

Both servers are patched here (by the launcher, in its own process only):
when a socket's unsent output exceeds the budget, the transport is aborted at
once, dropping what it buffered (a close frame could only queue behind it),
the application receives ``websocket.disconnect`` with
:data:`~ws_service.protocol.CLOSE_SLOW_CONSUMER` (4408), the abort is counted
in ``ws_connection_attempts_total{outcome="slow_consumer"}`` and logged, and any later ``send`` on it
raises :class:`SlowConsumerAborted` (an ``OSError``, as Uvicorn's own
``ClientDisconnected``). The client sees an abnormal closure (1006) and
reconnects, resuming with ``since``. Other connections are unaffected.

Daphne also gets the backpressure it lacks: Twisted buffers every write and
flushes only when the event loop runs, so a burst of sends (a replay page of
large messages) would pass the budget even for a client reading at full
speed. Before each ``websocket.send`` the application therefore waits while
the socket holds more than half the budget; a reader that leaves it above
half for ``WS_SEND_TIMEOUT_SECONDS`` is aborted as above. Uvicorn needs no
such wait: asyncio's transport hands a write to the kernel at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

from ws_service import metrics
from ws_service.protocol import CLOSE_SLOW_CONSUMER

logger = logging.getLogger("ws.output")

ABORTED_FLAG = "_ws_output_budget_aborted"
# How often a send waiting for room re-checks the socket (only while it waits).
DRAIN_POLL_SECONDS = 0.01


class SlowConsumerAborted(ConnectionAbortedError):
    """A send on a connection this module aborted for exceeding its output budget."""


def budget() -> int:
    """The unsent output one connection may hold, in bytes."""
    limit: int = settings.WS_MAX_PENDING_BYTES
    return limit


def twisted_pending_bytes(transport: Any) -> int:
    """Bytes a Twisted ``FileDescriptor`` transport holds that the kernel has not taken yet."""
    buffered = len(getattr(transport, "dataBuffer", b"")) - int(getattr(transport, "offset", 0))
    return buffered + int(getattr(transport, "_tempDataLen", 0))


def _drop_twisted_buffers(transport: Any) -> None:
    """Free what an aborted Twisted transport buffered (it keeps the bytes until it is collected)."""
    transport.dataBuffer = b""
    transport.offset = 0
    transport._tempDataBuffer = []
    transport._tempDataLen = 0


def _record_abort(pending: int, client: Any) -> None:
    metrics.connection_slow_consumer()
    logger.warning(
        "aborting connection from %s: %d bytes of output unsent (WS_MAX_PENDING_BYTES=%d)",
        client,
        pending,
        budget(),
    )


def send_timeout() -> float:
    """Seconds a Daphne send may wait for its socket to drain below half the budget."""
    seconds: float = settings.WS_SEND_TIMEOUT_SECONDS
    return seconds


def _abort_daphne(protocol: Any, pending: int) -> None:
    """Abort a Daphne WebSocket for unsent output: free its buffer, tell the application."""
    setattr(protocol, ABORTED_FLAG, True)
    _record_abort(pending, getattr(protocol, "client_addr", None))
    if hasattr(protocol, "application_queue"):
        protocol.application_queue.put_nowait({"type": "websocket.disconnect", "code": CLOSE_SLOW_CONSUMER})
    protocol.muted = True  # Daphne's onClose sends no second disconnect
    protocol.transport.abortConnection()
    _drop_twisted_buffers(protocol.transport)


def needs_room(protocol: Any) -> bool:
    """Whether a send on this Daphne socket has to wait (it holds more than half the budget)."""
    transport = getattr(protocol, "transport", None)
    if transport is None or getattr(protocol, ABORTED_FLAG, False):
        return False
    return twisted_pending_bytes(transport) > budget() // 2


async def wait_for_room(protocol: Any) -> None:
    """Wait while a Daphne socket holds more than half the budget; abort it after ``send_timeout()``."""
    if not needs_room(protocol):
        return
    transport = protocol.transport
    low_water = budget() // 2
    loop = asyncio.get_running_loop()
    deadline = loop.time() + send_timeout()
    while (pending := twisted_pending_bytes(transport)) > low_water:
        if getattr(protocol, ABORTED_FLAG, False) or getattr(transport, "disconnected", False):
            return
        if loop.time() >= deadline:
            _abort_daphne(protocol, pending)
            return
        await asyncio.sleep(DRAIN_POLL_SECONDS)


def install_daphne() -> None:
    """Patch Daphne (idempotent): wait for room before a send, check the budget after it."""
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_ws_output_budget_patch", False):
        return
    original = WebSocketProtocol.handle_reply
    original_server_reply = Server.handle_reply

    def handle_reply(self: Any, message: dict[str, Any]) -> None:
        if getattr(self, ABORTED_FLAG, False):
            if message.get("type") == "websocket.send":
                raise SlowConsumerAborted("the connection was aborted: too much unsent output")
            return
        original(self, message)
        if message.get("type") != "websocket.send" or self.transport is None:
            return
        pending = twisted_pending_bytes(self.transport)
        if pending > budget():
            _abort_daphne(self, pending)

    async def server_handle_reply(self: Any, protocol: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.send" and needs_room(protocol):  # no coroutine per send otherwise
            await wait_for_room(protocol)
        await original_server_reply(self, protocol, message)

    WebSocketProtocol.handle_reply = handle_reply
    Server.handle_reply = server_handle_reply
    WebSocketProtocol._ws_output_budget_patch = True


def install_uvicorn() -> None:
    """Patch Uvicorn's websockets-sansio protocol (idempotent): abort when the write buffer passes the budget.

    Its transport's high-water mark becomes the budget, so the transport
    calls ``pause_writing`` exactly when the unsent output exceeds it; instead
    of pausing the application, the transport is aborted.
    """
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    if getattr(WebSocketsSansIOProtocol, "_ws_output_budget_patch", False):
        return
    original_made = WebSocketsSansIOProtocol.connection_made
    original_send = WebSocketsSansIOProtocol.send

    def connection_made(self: Any, transport: Any) -> None:
        original_made(self, transport)
        limit = budget()
        transport.set_write_buffer_limits(high=limit, low=limit // 4)

    def pause_writing(self: Any) -> None:
        if getattr(self, ABORTED_FLAG, False) or not self.handshake_complete:
            self.writable.clear()  # Uvicorn's own behaviour
            return
        setattr(self, ABORTED_FLAG, True)
        _record_abort(self.transport.get_write_buffer_size(), self.client)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": CLOSE_SLOW_CONSUMER})
        self.transport.abort()

    async def send(self: Any, message: Any) -> None:
        if getattr(self, ABORTED_FLAG, False) and message.get("type") == "websocket.send":
            raise SlowConsumerAborted("the connection was aborted: too much unsent output")
        await original_send(self, message)

    # setattr: the class is typed, and replacing its methods is the point here.
    setattr(WebSocketsSansIOProtocol, "connection_made", connection_made)  # noqa: B010
    setattr(WebSocketsSansIOProtocol, "pause_writing", pause_writing)  # noqa: B010
    setattr(WebSocketsSansIOProtocol, "send", send)  # noqa: B010
    setattr(WebSocketsSansIOProtocol, "_ws_output_budget_patch", True)  # noqa: B010
