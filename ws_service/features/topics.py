"""Topics with history: ``subscribe`` (with replay), ``unsubscribe``, ``publish`` and live ``message`` frames.

A subscription joins the topic's group through the node (one membership per
process); live messages arrive as ``topic.message`` events and are sent in id
order, gaps filled from the database, duplicates dropped
(``ws_service.subscriptions``). Other features learn of subscriptions through
the hooks ``topic.joined`` and ``topic.left`` (``consumer``, ``topic``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from shared import messaging
from shared.messaging import TOPIC_MESSAGE_EVENT, MessageTextError
from shared.quota import QuotaExceeded, charge_publish
from shared.topics import TopicError, authorize, topic_group
from ws_service.frames import frames
from ws_service.kernel import KernelConsumer
from ws_service.layer_monitor import get_monitor
from ws_service.node import ENCODED_KEY, get_node
from ws_service.protocol import ErrorCode, ProtocolError, encode, optional_recent, optional_since
from ws_service.snapshots import get_reader, page_limit
from ws_service.subscriptions import Arrival, Subscriptions

logger = logging.getLogger("ws.consumer")

UNAVAILABLE_ERRORS = (DatabaseError, RedisError, OSError)
JOINED_HOOK = "topic.joined"
LEFT_HOOK = "topic.left"


def subscriptions(consumer: KernelConsumer) -> Subscriptions:
    """The topics ``consumer`` follows."""
    state: Subscriptions | None = consumer.state.get("topics")
    if state is None:
        state = consumer.state["topics"] = Subscriptions()
    return state


def authorized_topic(consumer: KernelConsumer, message: dict[str, Any]) -> str:
    """The message's ``topic``, if the connection's user may use it; else a ``ProtocolError``."""
    try:
        return authorize(consumer.user, message.get("topic"))
    except TopicError as error:
        raise ProtocolError(ErrorCode(error.code), error.detail) from None


@contextmanager
def reported_as_unavailable(what: str, topic: str) -> Iterator[None]:
    """Turn a database or Redis failure into an ``unavailable`` error frame."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        logger.warning("%s failed for %s: %s", what, topic, exc, extra={"topic": topic})
        raise ProtocolError(ErrorCode.UNAVAILABLE, f"{what} is unavailable right now; retry shortly") from exc


def _replay_cap() -> int:
    """The most messages one subscribe or one gap fill sends (``WS_REPLAY_MAX_MESSAGES``)."""
    cap: int = settings.WS_REPLAY_MAX_MESSAGES
    return cap


async def on_subscribe(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    topic = authorized_topic(consumer, message)
    since = optional_since(message)
    recent = optional_recent(message)
    followed = subscriptions(consumer)
    limit: int = settings.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION
    if topic not in followed and len(followed) >= limit:
        raise ProtocolError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"at most {limit} topics per connection: unsubscribe from one first",
        )
    node = get_node()
    with reported_as_unavailable("subscribing", topic):
        # Join the topic first: anything published from here on is either
        # in the snapshot or arrives afterwards (duplicates are dropped).
        # Concurrent subscribers of the topic share one read (ws_service.snapshots).
        await node.join(consumer, [topic_group(topic)])
        try:
            last, replay = await get_reader().snapshot(topic, since, recent)
        except BaseException:
            if topic not in followed:
                await node.leave(consumer, [topic_group(topic)])
            raise
    new = followed.add(topic, last)
    followed.release(topic)
    await consumer.reply({"type": "subscribed", "topic": topic, "last_id": last})
    await _replay(consumer, topic, replay, last)
    if new:
        await frames.emit(JOINED_HOOK, consumer, topic)


async def _replay(consumer: KernelConsumer, topic: str, page: list[dict[str, Any]], last: int) -> None:
    """Send the replay up to ``last`` page by page, at most ``WS_REPLAY_MAX_MESSAGES`` messages.

    When history is left after that many, the topic is held and a
    ``more_history`` frame tells the client where to continue.
    """
    cap = _replay_cap()
    count = 0
    asked = page_limit()  # what the snapshot asked for
    while page and not consumer.gone:
        for payload in page:
            await consumer.send_message(payload)
        count += len(page)
        sent = page[-1]["id"]
        if sent >= last or len(page) < asked:
            return
        if count >= cap:
            await _more_history(consumer, topic, sent, last)
            return
        asked = min(messaging.REPLAY_PAGE_SIZE, cap - count)
        with reported_as_unavailable("replaying history", topic):
            page = await database_sync_to_async(messaging.messages_after)(topic, sent, last, asked)


async def _more_history(consumer: KernelConsumer, topic: str, sent: int, last: int) -> None:
    """Hold ``topic`` after ``sent`` and tell the client to continue with ``since``."""
    subscriptions(consumer).hold(topic, sent)
    await consumer.reply({"type": "more_history", "topic": topic, "since": sent, "last_id": last})


async def leave_topic(consumer: KernelConsumer, topic: str) -> None:
    """Stop following ``topic``; failures are logged, the local state is cleared anyway."""
    subscriptions(consumer).remove(topic)
    try:
        await get_node().leave(consumer, [topic_group(topic)])
    except (RedisError, OSError) as exc:
        logger.warning("could not leave topic %s cleanly: %s", topic, exc, extra={"topic": topic})
    try:
        await frames.emit(LEFT_HOOK, consumer, topic)
    except (RedisError, OSError) as exc:
        logger.warning("could not announce leaving topic %s: %s", topic, exc, extra={"topic": topic})


async def on_unsubscribe(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    topic = authorized_topic(consumer, message)
    if topic not in subscriptions(consumer):
        raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {topic}")
    await leave_topic(consumer, topic)
    await consumer.reply({"type": "unsubscribed", "topic": topic})


async def on_publish(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    topic = authorized_topic(consumer, message)
    if get_monitor().down:
        raise ProtocolError(ErrorCode.UNAVAILABLE, "the channel layer is unavailable; retry shortly")
    try:
        text = messaging.validate_text(message.get("text"))
    except MessageTextError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, str(exc)) from None
    try:
        await charge_publish(consumer.user.pk, text)
    except QuotaExceeded as exc:
        raise ProtocolError(ErrorCode.QUOTA_EXCEEDED, exc.detail) from None
    with reported_as_unavailable("publishing", topic):
        payload = await database_sync_to_async(messaging.store_message)(topic, text)
    try:
        await messaging.deliver(payload)
    except (RedisError, OSError) as exc:
        # Stored, so subscribers still get it through since-recovery.
        logger.warning(
            "message %s#%s stored but not delivered live: %s", topic, payload["id"], exc, extra={"topic": topic}
        )
    await consumer.reply({"type": "ack", "topic": topic, "id": payload["id"], "ref": consumer.request_ref})


async def topic_message(consumer: KernelConsumer, event: dict[str, Any]) -> None:
    """A topic message: sent in id order, gaps filled from the database, duplicates dropped."""
    payload = event["message"]
    topic, message_id = payload["topic"], payload["id"]
    followed = subscriptions(consumer)
    arrival = followed.classify(topic, message_id)
    if arrival is Arrival.NEXT:
        # Encoded once by the node for every local subscriber (on Uvicorn, framed once too).
        await consumer.send_encoded(event.get(ENCODED_KEY) or encode(payload), payload["type"], shared=event)
        followed.sent(topic, message_id)
        return
    if arrival is Arrival.GAP:
        since = followed.last(topic)
        cap = _replay_cap()
        try:
            batch = await database_sync_to_async(messaging.messages_after)(topic, since, message_id, cap)
        except DatabaseError as exc:
            logger.warning("could not fill gap in %s after %s: %s", topic, since, exc, extra={"topic": topic})
            batch = [payload]
    else:
        return
    for item in batch:
        await consumer.send_message(item)
        followed.sent(topic, item["id"])
    if len(batch) >= cap and batch[-1]["id"] < message_id:
        await _more_history(consumer, topic, batch[-1]["id"], message_id)


async def _disconnect(consumer: KernelConsumer) -> None:
    for topic in subscriptions(consumer).topics():
        await leave_topic(consumer, topic)


frames.request("subscribe", on_subscribe)
frames.request("unsubscribe", on_unsubscribe)
frames.request("publish", on_publish)
frames.event(TOPIC_MESSAGE_EVENT, topic_message)
frames.on("disconnect", _disconnect)
frames.sends("subscribed", "more_history", "unsubscribed", "ack", "message")
