"""The /ws/ consumer: one authenticated client connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from redis.exceptions import RedisError

from shared import messaging
from shared.current_user import get_current_user
from shared.groups import BROADCAST_GROUP, user_group
from shared.messaging import MessageTextError
from shared.presence import PresenceEntry
from shared.quota import QuotaExceeded, charge_publish
from shared.topics import TopicError, authorize
from ws_service import metrics
from ws_service.layer_monitor import get_monitor
from ws_service.presence_frames import parse_after
from ws_service.presence_tracker import encoded_diff, get_tracker, presence_reply
from ws_service.protocol import (
    CLOSE_SERVICE_RESTART,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    ErrorCode,
    ProtocolError,
    encode,
    error_frame,
    optional_ref,
    optional_since,
    parse_frame,
)
from ws_service.registry import registry
from ws_service.subscriptions import Arrival, Subscriptions
from ws_service.topic_hub import ENCODED_KEY, get_hub

logger = logging.getLogger("ws.consumer")

Handler = Callable[["ConnectionConsumer", dict[str, Any]], Awaitable[None]]
UNAVAILABLE_ERRORS = (DatabaseError, RedisError, OSError)
LAYER_ERRORS = (RedisError, OSError)
LAYER_RETRY_MAX_SECONDS = 5.0


def _user_payload(user: Any) -> dict[str, Any]:
    return {"id": user.pk, "username": user.get_username()}


def current_user_from_orm() -> dict[str, Any]:
    """The current user as stored, read inside sync ORM code via the ContextVar."""
    user = get_current_user()
    if user is None or not user.is_authenticated:
        raise RuntimeError("no authenticated user is published for this connection")
    stored = get_user_model()._default_manager.get(pk=user.pk)
    return _user_payload(stored)


def _replay_cap() -> int:
    """The most messages one subscribe or one gap fill sends (``WS_REPLAY_MAX_MESSAGES``)."""
    cap: int = settings.WS_REPLAY_MAX_MESSAGES
    return cap


def _snapshot(topic: str, since: int | None) -> tuple[int, list[dict[str, Any]]]:
    """The topic's last id and, when ``since`` is given, the first page of messages after it."""
    last = messaging.last_id(topic)
    if since is None:
        return last, []
    limit = min(messaging.REPLAY_PAGE_SIZE, _replay_cap())
    return last, messaging.messages_after(topic, since, until=last, limit=limit)


@contextmanager
def _reported_as_unavailable(what: str, topic: str) -> Iterator[None]:
    """Turn a database or Redis failure into an ``unavailable`` error frame."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        logger.warning("%s failed for %s: %s", what, topic, exc, extra={"topic": topic})
        raise ProtocolError(ErrorCode.UNAVAILABLE, f"{what} is unavailable right now; retry shortly") from exc


class ConnectionConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no type hints
    """One authenticated client connection.

    Joins its user's group, its session's group and the broadcast group, so
    pushes and revocations from any process reach it on whichever replica it
    is. Topic subscriptions add the topic's group and a presence entry.
    """

    joined_groups: list[str]
    subscriptions: Subscriptions
    closing: bool
    gone: bool
    topic_events: asyncio.Queue[dict[str, Any]]
    lagging: bool = False  # the topic event queue overflowed and has not drained to half since

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' consumer loop, with a channel-layer receive that survives Redis outages.

        Stock Channels lets a channel-layer error escape: the consumer dies and
        the client gets 1011. Here the socket stays open, and the receive
        retries with backoff until Redis is back.
        """
        self.scope = scope
        self.joined_groups = []
        self.subscriptions = Subscriptions()
        self.closing = False
        self.gone = False  # a send failed: the client is gone and its disconnect event follows
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        # Topic events from this process's hub (one group membership per topic per process).
        self.topic_events = asyncio.Queue(maxsize=settings.CHANNEL_LAYER_CAPACITY)
        try:
            await await_many_dispatch([receive, self._receive_from_layer, self.topic_events.get], self.dispatch)
        except StopConsumer:
            pass
        finally:
            registry.discard(self)

    def deliver_local(self, event: dict[str, Any]) -> None:
        """A topic event from the hub; when this connection lags that far behind, the gap is refilled later.

        The queue holds at most ``CHANNEL_LAYER_CAPACITY`` events, each shared
        with every local subscriber, so a lagging connection costs pointers,
        not copies. One warning per overflow, not one per dropped event.
        """
        queue = self.topic_events
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            if not self.lagging:
                logger.warning("topic event queue full; dropping (refilled from the database on the next message)")
            self.lagging = True
            return
        if self.lagging and queue.qsize() <= queue.maxsize // 2:
            self.lagging = False

    async def _receive_from_layer(self) -> dict[str, Any]:
        delay = 0.25
        while True:
            try:
                message: dict[str, Any] = await self.channel_layer.receive(self.channel_name)
                return message
            except LAYER_ERRORS as exc:
                logger.debug("channel-layer receive failed, retrying in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, LAYER_RETRY_MAX_SECONDS)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run a handler; an unexpected exception is logged once and never kills the socket.

        Unlike Channels' own dispatch, no ``aclose_old_connections()`` thread
        hop runs before every handler (it halves echo throughput): every
        database call here goes through ``database_sync_to_async``, which
        closes stale connections around the work itself.
        """
        try:
            handler = getattr(self, get_handler_name(message), None)
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

    async def rejoin_groups(self) -> None:
        """Add this connection to its groups again (after Redis lost them); topics are the hub's."""
        if self.closing:
            return
        try:
            await self.channel_layer.group_add_many(self.joined_groups, self.channel_name)
        except LAYER_ERRORS as exc:
            logger.warning("could not restore groups yet: %s", exc)

    async def connect(self) -> None:
        if registry.draining:
            # Accepted only to say "restarting, reconnect" (1012): a refused handshake (403)
            # reads as final to clients; this one accepted in the last moment before the
            # listening socket closed should simply try again, reaching another replica.
            metrics.handshake_decided(self.scope, metrics.OUTCOME_DRAINING)
            await self.accept()
            await self.drain()
            return
        await self.accept()
        if self.scope.get("auth_unavailable"):
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAVAILABLE)
            await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="authentication unavailable")
            return
        user = self.scope["user"]
        if not user.is_authenticated:
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAUTHENTICATED)
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
            return
        groups = [user_group(user.pk), BROADCAST_GROUP]
        if self.scope.get("session_group"):
            groups.append(self.scope["session_group"])
        try:
            await self.channel_layer.group_add_many(groups, self.channel_name)  # one round trip
            self.joined_groups.extend(groups)
        except (RedisError, OSError) as exc:
            logger.error("channel layer unavailable on connect: %s", exc)
            metrics.handshake_decided(self.scope, metrics.OUTCOME_UNAVAILABLE)
            await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="channel layer unavailable")
            return
        registry.add(self)
        get_monitor().ensure_running()
        metrics.handshake_decided(self.scope, metrics.OUTCOME_ACCEPTED)
        logger.info("connected")
        await self.send_message(
            {"type": "welcome", "user": _user_payload(user), "connection_id": self.scope["connection_id"]}
        )

    async def disconnect(self, code: int) -> None:
        self.closing = True  # never rejoin groups from here on
        for topic in self.subscriptions.topics():
            await self._leave_topic(topic)
        try:
            await self.channel_layer.group_discard_many(self.joined_groups, self.channel_name)
        except (RedisError, OSError) as exc:
            logger.warning("could not leave groups %s: %s", self.joined_groups, exc)
        if self.joined_groups:
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
            handler = HANDLERS.get(frame_type)
            if handler is None:
                metrics.RECEIVED_UNKNOWN.inc()
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {frame_type[:64]!r}")
            metrics.RECEIVED.get(frame_type, metrics.RECEIVED_UNKNOWN).inc()
            await handler(self, message)
        except TopicError as error:
            await self.send_error(error.code, error.detail, message)
        except ProtocolError as error:
            await self.send_error(error.code, error.detail, message)

    async def send_message(self, message: dict[str, Any]) -> None:
        await self.send_encoded(encode(message), message.get("type"))

    async def send_encoded(self, text: str, frame_type: object) -> None:
        """A frame already encoded as JSON text; nothing once the client is gone."""
        if self.gone:
            return
        try:
            await self.send(text_data=text)
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

    def _presence_entry(self, topic: str) -> PresenceEntry:
        user = self.scope["user"]
        return PresenceEntry(topic, self.scope["connection_id"], user.pk, user.get_username())

    async def _leave_topic(self, topic: str) -> None:
        self.subscriptions.remove(topic)
        try:
            await get_hub().unsubscribe(topic, self)
            await get_tracker().leave(self._presence_entry(topic))
        except (RedisError, OSError) as exc:
            logger.warning("could not leave topic %s cleanly: %s", topic, exc, extra={"topic": topic})

    # -- client messages -------------------------------------------------

    async def on_ping(self, message: dict[str, Any]) -> None:
        await self.send_message({"type": "pong"})

    async def on_whoami(self, message: dict[str, Any]) -> None:
        user = await database_sync_to_async(current_user_from_orm)()
        await self.send_message({"type": "whoami", "user": user})

    async def on_subscribe(self, message: dict[str, Any]) -> None:
        topic = authorize(self.scope["user"], message.get("topic"))
        since = optional_since(message)
        limit: int = settings.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION
        if topic not in self.subscriptions and len(self.subscriptions) >= limit:
            raise ProtocolError(
                ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                f"at most {limit} topics per connection: unsubscribe from one first",
            )
        with _reported_as_unavailable("subscribing", topic):
            # Join the topic first: anything published from here on is either
            # in the snapshot or arrives afterwards (duplicates are dropped).
            await get_hub().subscribe(topic, self)
            try:
                last, replay = await database_sync_to_async(_snapshot)(topic, since)
            except BaseException:
                if topic not in self.subscriptions:
                    await get_hub().unsubscribe(topic, self)
                raise
        new = self.subscriptions.add(topic, last)
        self.subscriptions.release(topic)
        await self.send_message({"type": "subscribed", "topic": topic, "last_id": last})
        await self._replay(topic, replay, last)
        if new:
            with _reported_as_unavailable("presence", topic):
                await get_tracker().join(self._presence_entry(topic))

    async def _replay(self, topic: str, page: list[dict[str, Any]], last: int) -> None:
        """Send the replay up to ``last`` page by page, at most ``WS_REPLAY_MAX_MESSAGES`` messages.

        When history is left after that many, the topic is held and a
        ``more_history`` frame tells the client where to continue.
        """
        cap = _replay_cap()
        count = 0
        asked = min(messaging.REPLAY_PAGE_SIZE, cap)  # what _snapshot asked for
        while page and not self.gone:
            for payload in page:
                await self.send_message(payload)
            count += len(page)
            sent = page[-1]["id"]
            if sent >= last or len(page) < asked:
                return
            if count >= cap:
                await self._more_history(topic, sent, last)
                return
            asked = min(messaging.REPLAY_PAGE_SIZE, cap - count)
            with _reported_as_unavailable("replaying history", topic):
                page = await database_sync_to_async(messaging.messages_after)(topic, sent, last, asked)

    async def _more_history(self, topic: str, sent: int, last: int) -> None:
        """Hold ``topic`` after ``sent`` and tell the client to continue with ``since``."""
        self.subscriptions.hold(topic, sent)
        await self.send_message({"type": "more_history", "topic": topic, "since": sent, "last_id": last})

    async def on_unsubscribe(self, message: dict[str, Any]) -> None:
        topic = authorize(self.scope["user"], message.get("topic"))
        if topic not in self.subscriptions:
            raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {topic}")
        await self._leave_topic(topic)
        await self.send_message({"type": "unsubscribed", "topic": topic})

    async def on_publish(self, message: dict[str, Any]) -> None:
        topic = authorize(self.scope["user"], message.get("topic"))
        ref = optional_ref(message)
        if get_monitor().down:
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the channel layer is unavailable; retry shortly")
        try:
            text = messaging.validate_text(message.get("text"))
        except MessageTextError as exc:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, str(exc)) from None
        try:
            await charge_publish(self.scope["user"].pk, text)
        except QuotaExceeded as exc:
            raise ProtocolError(ErrorCode.QUOTA_EXCEEDED, exc.detail) from None
        with _reported_as_unavailable("publishing", topic):
            payload = await database_sync_to_async(messaging.store_message)(topic, text)
        try:
            await messaging.deliver(payload)
        except (RedisError, OSError) as exc:
            # Stored, so subscribers still get it through since-recovery.
            logger.warning(
                "message %s#%s stored but not delivered live: %s", topic, payload["id"], exc, extra={"topic": topic}
            )
        await self.send_message({"type": "ack", "topic": topic, "id": payload["id"], "ref": ref})

    async def on_presence(self, message: dict[str, Any]) -> None:
        topic = authorize(self.scope["user"], message.get("topic"))
        after = parse_after(message)
        with _reported_as_unavailable("presence", topic):
            reply = await presence_reply(topic, after)
        await self.send_message(reply)

    # -- channel-layer events --------------------------------------------

    async def deliver(self, event: dict[str, Any]) -> None:
        """A payload pushed through the channel layer, forwarded unchanged."""
        await self.send_message(event["payload"])

    async def topic_message(self, event: dict[str, Any]) -> None:
        """A topic message: sent in id order, gaps filled from the database, duplicates dropped."""
        payload = event["message"]
        topic, message_id = payload["topic"], payload["id"]
        arrival = self.subscriptions.classify(topic, message_id)
        if arrival is Arrival.NEXT:
            # Encoded once by the hub for every local subscriber.
            await self.send_encoded(event.get(ENCODED_KEY) or encode(payload), payload["type"])
            self.subscriptions.sent(topic, message_id)
            return
        if arrival is Arrival.GAP:
            since = self.subscriptions.last(topic)
            cap = _replay_cap()
            try:
                batch = await database_sync_to_async(messaging.messages_after)(topic, since, message_id, cap)
            except DatabaseError as exc:
                logger.warning("could not fill gap in %s after %s: %s", topic, since, exc, extra={"topic": topic})
                batch = [payload]
        else:
            return
        for item in batch:
            await self.send_message(item)
            self.subscriptions.sent(topic, item["id"])
        if len(batch) >= cap and batch[-1]["id"] < message_id:
            await self._more_history(topic, batch[-1]["id"], message_id)

    async def topic_presence(self, event: dict[str, Any]) -> None:
        if event["topic"] in self.subscriptions:
            await self.send_encoded(encoded_diff(event), "presence_diff")

    async def auth_revoked(self, event: dict[str, Any]) -> None:
        """The session or the user's credentials ended: close with 4401."""
        logger.info("closing: %s", event.get("reason", "revoked"))
        await self.close(code=CLOSE_UNAUTHENTICATED, reason=str(event.get("reason", "revoked"))[:100])


HANDLERS: dict[str, Handler] = {
    "ping": ConnectionConsumer.on_ping,
    "whoami": ConnectionConsumer.on_whoami,
    "subscribe": ConnectionConsumer.on_subscribe,
    "unsubscribe": ConnectionConsumer.on_unsubscribe,
    "publish": ConnectionConsumer.on_publish,
    "presence": ConnectionConsumer.on_presence,
}
