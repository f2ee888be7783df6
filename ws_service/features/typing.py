"""Typing indicators: ``typing`` tells a topic's other subscribers, on every replica, that a user is typing.

Nothing is stored. A connection announces at most one ``typing`` per topic
per ``WS_TYPING_INTERVAL_SECONDS``; more within the interval are dropped
silently (clients send one per keystroke).
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from shared.topics import topic_group
from ws_service.features.topics import authorized_topic, reported_as_unavailable, subscriptions
from ws_service.frames import frames
from ws_service.kernel import KernelConsumer, user_payload
from ws_service.protocol import ErrorCode, ProtocolError

TYPING_EVENT = "topic.typing"


async def on_typing(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    topic = authorized_topic(consumer, message)
    if topic not in subscriptions(consumer):
        raise ProtocolError(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {topic}")
    last_sent: dict[str, float] = consumer.state.setdefault("typing", {})
    now = time.monotonic()
    if now - last_sent.get(topic, -float("inf")) < settings.WS_TYPING_INTERVAL_SECONDS:
        return  # throttled
    last_sent[topic] = now
    event = {
        "type": TYPING_EVENT,
        "topic": topic,
        "user": user_payload(consumer.user),
        "connection_id": consumer.scope["connection_id"],
    }
    with reported_as_unavailable("typing", topic):
        await get_channel_layer().group_send(topic_group(topic), event)


async def topic_typing(consumer: KernelConsumer, event: dict[str, Any]) -> None:
    """Forward to the topic's subscribers, except the connection that is typing."""
    if event["topic"] in subscriptions(consumer) and event["connection_id"] != consumer.scope["connection_id"]:
        await consumer.send_message({"type": "typing", "topic": event["topic"], "user": event["user"]})


frames.request("typing", on_typing)
frames.event(TYPING_EVENT, topic_typing)
frames.sends("typing")
