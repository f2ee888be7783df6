"""Per-connection and per-user limits, as ASGI middlewares of the ws stack.

* :class:`ConnectionLimitMiddleware`: at most ``WS_MAX_CONNECTIONS_PER_USER``
  open connections per user across every replica; more are accepted and
  closed at once with 4429 (by the consumer's connect, which takes the slot
  in its one Redis round trip; it joins no group and reads no session). The
  consumer that took the slot gives it back when the connection ends.
* :class:`FrameLimitMiddleware`, per frame: a frame over
  ``WS_MAX_MESSAGE_BYTES`` closes the connection with 1009 (Daphne enforces
  the same limit first, the ws launcher passes it; this is the fallback for
  servers that do not); then a token bucket per connection: a frame over it
  never reaches the consumer and gets error ``rate_limited``, and sustained
  flooding (``WS_RATE_LIMIT_STRIKES`` rejected frames within 10 s) closes the
  connection with 1008.

Stock Daphne/autobahn only lets an application send 1000 or 3000-4999. When
the server refuses 1008/1009, the close falls back to the application-range
twin (4008/4009), the same convention as 4013 for 1013.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from django.conf import settings

from ws_service import metrics
from ws_service.asgi_types import ASGIApp, Message, Receive, Scope, Send, hands_over
from ws_service.connection_slots import SLOT_CLAIM_KEY, Slot, SlotClaim
from ws_service.protocol import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    ProtocolError,
    encode,
    error_frame,
    parse_frame,
)
from ws_service.token_bucket import TokenBucket, WindowCounter

logger = logging.getLogger("ws.limits")

RATE_LIMITED = "rate_limited"
STRIKE_WINDOW_SECONDS = 10.0
# What an RFC close code becomes when the server only accepts 1000 and 3000-4999.
APPLICATION_RANGE_TWIN = {CLOSE_POLICY_VIOLATION: 4008, CLOSE_MESSAGE_TOO_BIG: 4009}


async def close_connection(send: Send, code: int) -> None:
    """Close with ``code``; if the server refuses an RFC code, with its 4xxx twin."""
    try:
        await send({"type": "websocket.close", "code": code})
    except Exception as exc:  # autobahn raises a bare Exception for a code it will not send
        twin = APPLICATION_RANGE_TWIN.get(code)
        if twin is None:
            raise
        logger.warning("server refused close code %s (%s); closing with %s", code, exc, twin)
        await send({"type": "websocket.close", "code": twin})


def _disconnect(code: int) -> Message:
    """What the inner app receives once a middleware has closed the connection."""
    return {"type": "websocket.disconnect", "code": code}


def frame_size(message: Message) -> int:
    """The payload size in bytes of a ``websocket.receive`` message."""
    text = message.get("text")
    if text is not None:
        text = str(text)
        # ASCII text is one byte per character: no copy to count it.
        return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return len(message.get("bytes") or b"")


def _request_of(message: Message) -> dict[str, Any]:
    """The parsed frame when it is a valid message (so its ``ref`` can be echoed), else ``{}``."""
    try:
        return parse_frame(message.get("text"), message.get("bytes"))
    except ProtocolError:
        return {}


class LimitedReceive:
    """One connection's ``receive`` behind the frame limits (see :class:`FrameLimitMiddleware`).

    An object with slots rather than a closure: an idle connection holds this
    object and its token bucket, not a function, its closure and a cell per
    variable (the strike counter is made at the first rejected frame).
    """

    __slots__ = ("bucket", "closed", "limit", "receive", "send", "strikes")

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send
        self.limit: int = settings.WS_MAX_MESSAGE_BYTES
        self.bucket = TokenBucket(settings.WS_RATE_LIMIT_PER_SECOND, settings.WS_RATE_LIMIT_BURST)
        self.strikes: WindowCounter | None = None  # made at the first rejected frame (few connections see one)
        self.closed = 0  # the close code once a limit has closed the connection

    async def __call__(self) -> Message:
        # Each pass consumes one inbound frame; at most STRIKES rejections end the loop.
        while not self.closed:
            message = await self.receive()
            if message["type"] != "websocket.receive":
                return message
            size = frame_size(message)
            if size > self.limit:
                self.closed = CLOSE_MESSAGE_TOO_BIG
                logger.warning("closing: a %d-byte frame is over the %d-byte limit", size, self.limit)
                await close_connection(self.send, CLOSE_MESSAGE_TOO_BIG)
                break
            if self.bucket.try_acquire():
                return message
            if self.strikes is None:
                self.strikes = WindowCounter(settings.WS_RATE_LIMIT_STRIKES, STRIKE_WINDOW_SECONDS)
            if self.strikes.hit():
                self.closed = CLOSE_POLICY_VIOLATION
                logger.warning("closing: sustained flooding over the rate limit")
                metrics.connection_rate_limited()
                await close_connection(self.send, CLOSE_POLICY_VIOLATION)
                break
            detail = f"over {settings.WS_RATE_LIMIT_PER_SECOND:g} frames per second; slow down"
            frame = error_frame(RATE_LIMITED, detail, _request_of(message))
            await self.send({"type": "websocket.send", "text": encode(frame)})
            metrics.count_error(RATE_LIMITED)
            metrics.SENT_ERROR.inc()
        return _disconnect(self.closed)


class FrameLimitMiddleware:
    """Per inbound frame, in order: the size limit, then the connection's token bucket.

    * A frame over ``WS_MAX_MESSAGE_BYTES`` closes the connection with 1009.
    * A frame over the rate gets error ``rate_limited`` instead of processing;
      ``WS_RATE_LIMIT_STRIKES`` such frames within 10 s close the connection
      with 1008 (policy violation).

    After either close the inner app receives a disconnect with that code and
    cleans up as usual. Both checks share one wrapper (:class:`LimitedReceive`),
    and the middleware hands the connection over
    (:func:`~ws_service.asgi_types.hands_over`): no frame of its own stays.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    @hands_over
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "websocket":
            return self.inner(scope, receive, send)
        return self.inner(scope, LimitedReceive(receive, send), send)


class ConnectionLimitMiddleware:
    """At most ``WS_MAX_CONNECTIONS_PER_USER`` open connections per user, across replicas.

    Goes after authentication (it needs ``scope["user"]`` and
    ``scope["connection_id"]``). Anonymous connections pass through (the
    consumer closes them with 4401). For an authenticated one it puts a
    :class:`~ws_service.connection_slots.SlotClaim` in the scope; the
    consumer's connect takes the slot in its one admission round trip
    (``ws_service.admission``, with the groups it joins) and closes with 4429
    right after accepting when the user is over the limit. An app that is not
    a ``KernelConsumer`` takes it with ``ws_service.admission.admit(...,
    claim=scope[SLOT_CLAIM_KEY])``. When Redis cannot be reached the
    connection is let through uncounted: availability wins over the limit.

    The middleware only puts the claim in the scope, then hands the
    connection over (:func:`~ws_service.asgi_types.hands_over`): no frame of
    its own stays on the connection's stack. Whoever takes the slot releases
    it when the connection ends, whatever the reason (normal close, a
    handler's crash, cancellation, drain):
    ``KernelConsumer.__call__`` as it returns, an app of your own with
    :func:`~ws_service.connection_slots.release_claim`.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    @hands_over
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        user = scope.get("user")
        if scope["type"] == "websocket" and user is not None and user.is_authenticated:
            limit: int = settings.WS_MAX_CONNECTIONS_PER_USER
            # In place: the stack's outermost middleware made the scope this connection's own.
            scope[SLOT_CLAIM_KEY] = SlotClaim(Slot(user.pk, scope["connection_id"]), limit)
        return self.inner(scope, receive, send)
