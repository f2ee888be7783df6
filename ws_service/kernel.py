"""The consumer kernel: the transport behaviour every WebSocket consumer of this service shares.

:class:`KernelConsumer` authenticates nothing itself (the middleware stack
did) but refuses what the stack marked: draining (1012), authentication
unavailable (4013), anonymous (4401). It then admits the connection in one
pipelined Redis round trip shared with the connects arriving together
(``ws_service.admission``): takes its per-user slot (over the limit: 4429;
the consumer gives a taken slot back as its ``__call__`` returns, whatever
ended the connection), joins its groups through the process's node (its
user, its session, ``broadcast``) and reads its session's revocation marks;
confirms its session (``ws_service.auth.confirm_session``: refused with 4401
if it was revoked meanwhile), registers it for draining, and dispatches:

* client frames by ``type`` to the handlers of its :class:`FrameRegistry`
  (``frames``), with metrics, error frames for client mistakes and an
  ``internal`` error for a bug, never a dead socket. A request's ``ref``
  (optional, a string of at most 64 characters) is checked here once and
  echoed by every error frame answering it and by every direct reply a
  handler sends with :meth:`KernelConsumer.reply`;
* channel-layer events (``group_send`` from any process) by ``type``, first
  to the registry's event handlers, then, as Channels does, to the method
  named after the type (``"chat.message"`` runs ``chat_message``).

A consumer holds no channel-layer channel and no receive task of its own:
the node reads the process's one channel and queues each event here. An idle
connection is one task awaiting the server's ``receive``: events wait in a
deque made on the first one (and dropped once drained), and are dispatched by
the connection's own task after the frame it is handling, or, while it
waits for a frame, by a task started eagerly for them (one that never waits,
such as a live message sent straight to the socket, is never scheduled).
Either way one message is handled at a time, in arrival order per source.

Subclass it for a consumer on another path::

    class EchoConsumer(KernelConsumer):
        frames = FrameRegistry()   # this path's own message types

and register handlers on that registry (see docs/extending.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable
from typing import Any, ClassVar

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from shared.groups import BROADCAST_GROUP, user_group
from shared.revocation import REVOKED_EVENT
from ws_service import metrics
from ws_service.admission import admit
from ws_service.asgi_types import Receive, Send, hands_over
from ws_service.auth import confirm_session, marked_groups
from ws_service.connection_slots import SLOT_CLAIM_KEY, release_claim
from ws_service.direct_frames import direct_protocol, shared_frame, text_frame, write_frame
from ws_service.frames import FrameRegistry, frames
from ws_service.layer_monitor import get_monitor
from ws_service.node import get_node
from ws_service.protocol import (
    CLOSE_SERVICE_RESTART,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    ErrorCode,
    ProtocolError,
    encode,
    error_frame,
    optional_ref,
    parse_frame,
)
from ws_service.registry import registry

logger = logging.getLogger("ws.consumer")

LAYER_ERRORS = (RedisError, OSError)
# Events queued beyond the capacity anyway: losing one would leave a revoked connection open.
ESSENTIAL_EVENTS = frozenset({REVOKED_EVENT})
HANDLER_NAMES_CACHED = 256


@functools.lru_cache(maxsize=HANDLER_NAMES_CACHED)
def handler_name(message_type: str) -> str:
    """Channels' handler method name for a message type (``"chat.message"`` → ``chat_message``), per process.

    Types come from the server and the channel layer (``websocket.receive``,
    the events the application sends), never from a client's frame.
    """
    name: str = get_handler_name({"type": message_type})
    return name


def user_payload(user: Any) -> dict[str, Any]:
    """How frames describe a user."""
    return {"id": user.pk, "username": user.get_username()}


class KernelConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no type hints
    """One authenticated client connection with the service's transport behaviour.

    ``state`` holds each feature's per-connection state under the feature's
    name. ``lagging`` is true while the event queue overflowed and has not
    drained to half since (topic messages dropped then are refilled from the
    database).
    """

    frames: ClassVar[FrameRegistry] = FrameRegistry()
    #: Channels' groups joined on connect (a subclass lists names here); a tuple, so no list per connection.
    groups: ClassVar[Any] = ()
    #: The node owns the process's channel: a consumer has none.
    channel_layer: Any = None
    channel_name: str | None = None
    #: The disconnect handler has run (or is running).
    closing: bool = False
    #: A send failed: the client is gone and its disconnect event follows.
    gone: bool = False
    #: Each feature's state (``None`` until a feature asks for it: see :attr:`state`).
    _state: dict[str, Any] | None = None
    #: Events the node queued and no handler has taken yet (``None`` while there are none).
    pending: deque[dict[str, Any]] | None = None
    lagging: bool = False
    #: True while the connection's task waits for the next frame (events may then run in a drainer task).
    waiting: bool = False
    #: The task handling queued events while the connection's task waits for a frame.
    drainer: asyncio.Task[None] | None = None
    #: The connection's own task (the one awaiting frames).
    task: asyncio.Task[Any] | None = None
    #: An event handler raised ``StopConsumer``: the connection's task was cancelled to end it.
    stopped: bool = False
    #: The valid ``ref`` of the request being handled, echoed by :meth:`reply`; ``None`` between requests.
    request_ref: str | None = None
    #: ``websocket_receive`` is the kernel's own: client frames go straight to :meth:`receive` (set per class).
    receives_frames: ClassVar[bool] = True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Dispatch client frames and the events the node queues, one at a time."""
        self.scope = scope
        self.base_send = send
        self.task = asyncio.current_task()
        try:
            while True:
                if self.pending is not None:  # no coroutine per frame when no event waits
                    await self.dispatch_pending()
                self.waiting = True
                try:
                    message = await receive()
                finally:
                    self.waiting = False
                if self.drainer is not None:
                    await asyncio.shield(self.drainer)
                if self.receives_frames and message["type"] == "websocket.receive":
                    # A client frame, straight to ``receive`` (which answers every failure with an error
                    # frame): what Channels' ``websocket_receive`` does, without a dispatch by type.
                    await self.receive(message.get("text"), message.get("bytes"))
                else:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        except asyncio.CancelledError:
            if not self.stopped:
                raise
        finally:
            if self.drainer is not None:
                self.drainer.cancel()
            self.task = None  # no cycle through the finished task
            registry.discard(self)
            # The slot its connect took, given back however the connection ended (the limits middleware
            # handed the connection over and is no longer on the stack to do it).
            await release_claim(self.scope.get(SLOT_CLAIM_KEY))

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """Channels' ``as_asgi``, handing the connection over to the new consumer.

        The returned app creates the consumer and returns its coroutine instead
        of awaiting it (:func:`~ws_service.asgi_types.hands_over`): no wrapper
        frame stays suspended for the connection's life.
        """

        @hands_over
        def app(scope: dict[str, Any], receive: Receive, send: Send) -> Awaitable[None]:
            consumer: Awaitable[None] = cls(**initkwargs)(scope, receive, send)
            return consumer

        app.consumer_class = cls  # type: ignore[attr-defined]  # what Channels' as_asgi sets
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return app

    @property
    def state(self) -> dict[str, Any]:
        """Each feature's per-connection state under the feature's name (made on first use)."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    async def dispatch_pending(self) -> None:
        """Handle the queued events in order, until none is left."""
        while self.pending:
            await self.dispatch(self.pending.popleft())
        self.pending = None

    async def _drain_while_waiting(self, task: asyncio.Task[Any] | None) -> None:
        """Queued events, handled while the connection's task waits for a frame.

        Started eagerly (:func:`asyncio.eager_task_factory`): it runs at once,
        inside the node's fan-out, and an event handled without waiting (a
        live message sent straight to the socket) never schedules a task. It
        registers itself as ``drainer`` before its first event, so events
        queued meanwhile join this drain instead of starting another.
        """
        self.drainer = asyncio.current_task()
        try:
            await self.dispatch_pending()
        except StopConsumer:
            self.stopped = True
            if task is not None:
                task.cancel()  # a handler ended the connection: stop waiting for frames
        finally:
            self.drainer = None

    @property
    def user(self) -> Any:
        """The connection's authenticated user (``scope["user"]``)."""
        return self.scope["user"]

    def connection_groups(self) -> list[str]:
        """The groups joined on connect: the user's, the session's, ``broadcast`` and the class's ``groups``.

        ``groups`` is Channels' class attribute: a subclass listing group
        names there joins them on connect and leaves them on disconnect.
        """
        groups = [user_group(self.user.pk), BROADCAST_GROUP]
        if self.scope.get("session_group"):
            groups.append(self.scope["session_group"])
        return [*groups, *(self.groups or ())]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.receives_frames = cls.websocket_receive is KernelConsumer.websocket_receive

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Channels' handler: a client frame to :meth:`receive` (the connection's loop calls that itself)."""
        await self.receive(message.get("text"), message.get("bytes"))

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Channels' handler without its per-connection ``group_add``: the node joins groups."""
        await self.connect()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' handler without its per-connection ``group_discard``: the node leaves groups."""
        await self.disconnect(message.get("code", 1000))
        raise StopConsumer()

    def deliver_local(self, event: dict[str, Any]) -> None:
        """An event from the node; never blocks.

        At most ``CHANNEL_LAYER_CAPACITY`` events wait (each shared with every
        local member, so a lagging connection costs pointers, not copies);
        beyond that, events are dropped except :data:`ESSENTIAL_EVENTS`. One
        warning per overflow, not one per dropped event.
        """
        queue = self.pending
        if queue is None:
            queue = self.pending = deque()
        capacity: int = settings.CHANNEL_LAYER_CAPACITY
        if len(queue) >= capacity and event.get("type") not in ESSENTIAL_EVENTS:
            if not self.lagging:
                logger.warning("event queue full; dropping (topic messages are refilled from the database)")
            self.lagging = True
            return
        queue.append(event)
        if self.lagging and len(queue) <= capacity // 2:
            self.lagging = False
        if self.waiting and self.drainer is None:
            task = self.task
            # In the connection's own context (its id and user for logs and the ContextVar), not the
            # node's; the connection's task is suspended in receive(), so the context is free to enter.
            asyncio.eager_task_factory(
                asyncio.get_running_loop(),
                self._drain_while_waiting(task),
                context=task.get_context() if task is not None else None,
            )

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run a handler; an unexpected exception is logged once and never kills the socket.

        Unlike Channels' own dispatch, no ``aclose_old_connections()`` thread
        hop runs before every handler (it halves echo throughput): every
        database call goes through ``database_sync_to_async``, which closes
        stale connections around the work itself.
        """
        try:
            message_type = message["type"]
            event_handler = self.frames.events.get(message_type)
            if event_handler is not None:
                await event_handler(self, message)
                return
            handler = getattr(self, handler_name(message_type), None)
            if handler is None:
                raise ValueError(f"no handler for message type {message['type']!r}")
            await handler(message)
        except StopConsumer:
            raise
        except Exception:
            logger.exception("unhandled error while handling %s", message.get("type"))
            if message.get("type") == "websocket.receive":
                await self.send_error(ErrorCode.INTERNAL, "the server failed to handle this message", {})
            elif message.get("type") == "websocket.connect":
                metrics.handshake_decided(self.scope, metrics.OUTCOME_ERROR)
                await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="internal error")

    async def drain(self) -> None:
        """Close with 1012 (service restart); the disconnect handler cleans up."""
        await self.close(code=CLOSE_SERVICE_RESTART, reason="server restarting, reconnect")

    async def connect(self) -> None:
        if registry.draining:
            # Accepted only to say "restarting, reconnect" (1012): a refused handshake (403)
            # reads as final to clients; this one accepted in the last moment before the
            # listening socket closed should simply try again, reaching another replica.
            metrics.handshake_decided(self.scope, metrics.OUTCOME_DRAINING)
            if await self.accepted():
                await self.drain()
            return
        if not await self.accepted():
            return
        if self.scope.get("auth_unavailable"):
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAVAILABLE)
            await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="authentication unavailable")
            return
        if not self.user.is_authenticated:
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAUTHENTICATED)
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
            return
        claim = self.scope.get(SLOT_CLAIM_KEY)
        try:
            # At most one pipelined round trip, shared with the connects arriving together.
            admitted = await admit(self, self.connection_groups(), claim=claim, marks=marked_groups(self.scope))
        except LAYER_ERRORS as exc:
            logger.error("channel layer unavailable on connect: %s", exc)
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAVAILABLE)
            await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="channel layer unavailable")
            return
        if admitted.refused:
            assert claim is not None
            logger.info("refusing connection: user %s already has %d open", self.user.pk, claim.limit)
            metrics.handshake_decided(self.scope, metrics.OUTCOME_TOO_MANY_CONNECTIONS)
            await self.close(code=CLOSE_TOO_MANY_CONNECTIONS)
            return
        try:
            confirmed = await confirm_session(self.scope, admitted.revoked)  # holding the groups
        except DatabaseError as exc:
            logger.error("authentication unavailable: database error: %s", exc)
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAVAILABLE)
            await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="authentication unavailable")
            return
        if not confirmed:
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAUTHENTICATED)
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="session revoked")
            return
        registry.add(self)
        get_monitor().ensure_running()
        metrics.handshake_decided(self.scope, metrics.OUTCOME_ACCEPTED)
        logger.info("connected")
        await self.welcome()

    async def accepted(self) -> bool:
        """Accept the handshake; ``False`` when the client already left (nothing more to do).

        Uvicorn raises ``ClientDisconnected`` (an ``OSError``) for a client that
        closed its socket while the handshake was being decided.
        """
        try:
            await self.accept()
        except OSError as exc:
            logger.info("client left during the handshake: %s", exc or type(exc).__name__)
            self.gone = True
            return False
        return True

    async def welcome(self) -> None:
        """The first frame of an accepted connection."""
        await self.send_message(
            {"type": "welcome", "user": user_payload(self.user), "connection_id": self.scope["connection_id"]}
        )

    async def disconnect(self, code: int) -> None:
        if self.closing:
            return
        self.closing = True
        await self.frames.emit("disconnect", self)
        node = get_node()
        joined = node.groups_of(self)
        try:
            await node.leave(self, joined)
        except LAYER_ERRORS as exc:
            logger.warning("could not leave groups %s: %s", joined, exc)
        if joined:
            logger.info("disconnected with code %s", code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = parse_frame(text_data, bytes_data)
        except ProtocolError as error:
            metrics.RECEIVED_INVALID.inc()
            await self.send_error(error.code, error.detail, {})
            return
        try:
            frame_type = message["type"]
            handler = self.frames.requests.get(frame_type)
            if handler is None:
                metrics.RECEIVED_UNKNOWN.inc()
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {frame_type[:64]!r}")
            metrics.count_received(frame_type)
            self.request_ref = optional_ref(message)
            await handler(self, message)
        except ProtocolError as error:
            await self.send_error(error.code, error.detail, message)
        except StopConsumer:
            raise
        except Exception:
            # A bug in a handler: logged once, answered with ``internal`` echoing the request's ref.
            logger.exception("unhandled error while handling %s", str(message.get("type"))[:64])
            await self.send_error(ErrorCode.INTERNAL, "the server failed to handle this message", message)
        finally:
            self.request_ref = None

    async def reply(self, message: dict[str, Any]) -> None:
        """Send a direct reply to the request being handled, echoing its ``ref`` (when it sent one)."""
        if self.request_ref is not None:
            message = {**message, "ref": self.request_ref}
        await self.send_encoded(encode(message), message.get("type"))

    async def send_message(self, message: dict[str, Any]) -> None:
        await self.send_encoded(encode(message), message.get("type"))

    async def send_encoded(self, text: str, frame_type: object, shared: dict[str, Any] | None = None) -> None:
        """A frame already encoded as JSON text; nothing once the client is gone.

        On Uvicorn the frame goes straight to an open socket
        (``ws_service.direct_frames``). ``shared`` is an event every local
        member sends as it is (a topic message): its frame is built once and
        kept in it for every connection.
        Output beyond ``WS_MAX_PENDING_BYTES`` aborts the socket
        (``ws_service.output_budget``): the send raises ``OSError`` here.
        """
        if self.gone:
            return
        protocol = direct_protocol(self.base_send)
        if protocol is not None and write_frame(
            protocol, text_frame(text) if shared is None else shared_frame(shared, text)
        ):
            metrics.count_sent(frame_type)
            return
        try:
            # Straight to the server (what Channels' two ``send`` layers end in), once per frame.
            await self.base_send({"type": "websocket.send", "text": text})
        except OSError as exc:
            # Aborted for unsent output (ws_service.output_budget) or Uvicorn's ClientDisconnected:
            # the disconnect event is queued and runs the cleanup once this handler returns.
            logger.info("client gone, not sending: %s", exc)
            self.gone = True
            return
        metrics.count_sent(frame_type)

    async def send_error(self, code: str, detail: str, request: dict[str, Any]) -> None:
        """An error frame (echoing the request's valid ``ref``), counted by code."""
        metrics.count_error(code)
        await self.send_message(error_frame(code, detail, request))

    # -- channel-layer events every connection handles ---------------------

    async def deliver(self, event: dict[str, Any]) -> None:
        """A payload pushed through the channel layer (``shared.push``), forwarded unchanged."""
        await self.send_message(event["payload"])

    async def auth_revoked(self, event: dict[str, Any]) -> None:
        """The session or the user's credentials ended: close with 4401."""
        logger.info("closing: %s", event.get("reason", "revoked"))
        await self.close(code=CLOSE_UNAUTHENTICATED, reason=str(event.get("reason", "revoked"))[:100])


frames.sends("welcome", "error", "notification")
