"""A per-connection bound on received, unconsumed frames (``WS_MAX_PENDING_FRAMES``) on Daphne.

Daphne puts every frame it reads into the application's ``asyncio.Queue``
(unbounded) and never stops reading the socket: while a connection's consumer
is busy (a long replay, a slow query, a stalled handler), a client sending at
full speed grows the process by up to ``WS_MAX_MESSAGE_BYTES`` per frame,
without bound. The rate limit does not help: it applies when the consumer
takes a frame from the queue.

Patched here (by the launcher, in its own process only): once
``WS_MAX_PENDING_FRAMES`` frames wait in a connection's queue, Daphne stops
reading its socket (``transport.pauseProducing()``), so TCP backpressure
pushes back on the client (its sends block) and the process holds at most
that many frames, plus the one read (64 KiB) autobahn is already parsing.
While paused, a timer checks the queue every
:data:`POLL_SECONDS` (only paused connections have one) and reading resumes
once the consumer has taken it down to half. Nothing is dropped and the
connection stays open. Each pause is counted in ``ws_inbound_pauses_total``.

Uvicorn (websockets-sansio) needs no patch: it pauses reading after every
received message and resumes when the consumer has emptied its queue, so it
holds at most the frames of one read.

While paused, the server reads nothing from the client, not even its pongs
or its reply to a close: a consumer stuck for longer than
``WS_PING_INTERVAL`` + ``WS_PING_TIMEOUT`` loses the connection to the ping
timeout, and a close the server sends meanwhile ends with autobahn dropping
the connection after its 1 s close-handshake timeout (the client has the
close frame and its code by then). Uvicorn has the same ping timeout, and
resumes reading when the application closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from django.conf import settings

from ws_service import metrics

logger = logging.getLogger("ws.input")

PAUSED_FLAG: Final = "_ws_input_budget_paused"
# How often a paused connection's queue is checked (only paused connections are polled).
POLL_SECONDS: Final = 0.02


def limit() -> int:
    """Received frames one connection may hold unconsumed before its socket stops being read."""
    frames: int = settings.WS_MAX_PENDING_FRAMES
    return frames


def resume_below() -> int:
    """Reading resumes once the unconsumed frames are down to this (half the limit)."""
    return limit() // 2


def _pending(protocol: Any) -> int:
    queue = getattr(protocol, "application_queue", None)
    return 0 if queue is None else int(queue.qsize())


def _pause(protocol: Any) -> None:
    setattr(protocol, PAUSED_FLAG, True)
    protocol.transport.pauseProducing()
    metrics.inbound_paused()
    logger.debug("paused reading from %s: %d frames unconsumed", getattr(protocol, "client_addr", None), limit())
    _later(protocol)


def _later(protocol: Any) -> None:
    # Daphne runs Twisted on the asyncio reactor: its loop is the reactor's.
    asyncio.get_event_loop().call_later(POLL_SECONDS, _check, protocol)


def _check(protocol: Any) -> None:
    """While paused: resume once the queue is down to half; stop polling once the connection is gone."""
    transport = protocol.transport
    if transport is None or not getattr(transport, "connected", False):
        setattr(protocol, PAUSED_FLAG, False)  # gone: nothing to resume, stop polling
        return
    if _pending(protocol) > resume_below():
        _later(protocol)
        return
    setattr(protocol, PAUSED_FLAG, False)
    transport.resumeProducing()


def install_daphne() -> None:
    """Patch ``daphne.ws_protocol.WebSocketProtocol`` (idempotent): pause reading at the frame limit."""
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_ws_input_budget_patch", False):
        return
    original = WebSocketProtocol.onMessage

    def onMessage(self: Any, payload: bytes, isBinary: bool) -> None:
        original(self, payload, isBinary)
        if getattr(self, PAUSED_FLAG, False) or self.transport is None or _pending(self) < limit():
            return
        _pause(self)

    WebSocketProtocol.onMessage = onMessage
    WebSocketProtocol._ws_input_budget_patch = True
