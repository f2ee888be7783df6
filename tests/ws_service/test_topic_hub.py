"""The per-process topic hub against a real Redis channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

from shared.messaging import TOPIC_MESSAGE_EVENT
from shared.topics import topic_group
from ws_service.topic_hub import TopicHub, event_topic

pytestmark = pytest.mark.usefixtures("service_env")


class Inbox:
    """A local subscriber that keeps what it is handed (the consumer queues it instead)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def deliver_local(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.arrived.set()


def _message(topic: str, message_id: int) -> dict[str, Any]:
    return {"type": TOPIC_MESSAGE_EVENT, "message": {"type": "message", "topic": topic, "id": message_id}}


async def _members(topic: str) -> int:
    layer: Any = get_channel_layer()
    connection = layer.connection(layer.consistent_hash(topic_group(topic)))
    count: int = await connection.zcard(layer._group_key(topic_group(topic)))
    return count


async def _wait(inbox: Inbox, count: int) -> None:
    async with asyncio.timeout(5):
        while len(inbox.events) < count:
            inbox.arrived.clear()
            await inbox.arrived.wait()


async def test_many_local_subscribers_share_one_group_membership() -> None:
    hub = TopicHub()
    inboxes = [Inbox() for _ in range(50)]
    for inbox in inboxes:
        await hub.subscribe("room.hub-a", inbox)
    assert await _members("room.hub-a") == 1  # one copy per process, not per connection
    layer: Any = get_channel_layer()
    await layer.group_send(topic_group("room.hub-a"), _message("room.hub-a", 1))
    for inbox in inboxes:
        await _wait(inbox, 1)
        assert inbox.events[0]["message"]["id"] == 1
    for inbox in inboxes[:-1]:
        await hub.unsubscribe("room.hub-a", inbox)
    assert await _members("room.hub-a") == 1
    await hub.unsubscribe("room.hub-a", inboxes[-1])
    assert await _members("room.hub-a") == 0  # the last one leaves the group
    assert "room.hub-a" not in hub.local


async def test_events_go_only_to_their_topics_subscribers() -> None:
    hub = TopicHub()
    a, b = Inbox(), Inbox()
    await hub.subscribe("room.hub-b", a)
    await hub.subscribe("room.hub-c", b)
    layer: Any = get_channel_layer()
    await layer.group_send(topic_group("room.hub-b"), _message("room.hub-b", 1))
    await layer.group_send(topic_group("room.hub-c"), {"type": "topic.presence", "topic": "room.hub-c"})
    await _wait(a, 1)
    await _wait(b, 1)
    assert [event["type"] for event in a.events] == [TOPIC_MESSAGE_EVENT]
    assert [event["type"] for event in b.events] == ["topic.presence"]
    assert hub.dispatch(_message("room.nobody", 1)) == 0
    await hub.unsubscribe("room.hub-b", a)
    await hub.unsubscribe("room.hub-c", b)


async def test_rejoin_restores_memberships_redis_lost() -> None:
    hub = TopicHub()
    inbox = Inbox()
    await hub.subscribe("room.hub-d", inbox)
    layer: Any = get_channel_layer()
    connection = layer.connection(layer.consistent_hash(topic_group("room.hub-d")))
    await connection.delete(layer._group_key(topic_group("room.hub-d")))  # Redis lost the group
    assert await _members("room.hub-d") == 0
    await hub.rejoin()
    assert await _members("room.hub-d") == 1
    await layer.group_send(topic_group("room.hub-d"), _message("room.hub-d", 7))
    await _wait(inbox, 1)
    await hub.unsubscribe("room.hub-d", inbox)


def test_event_topic_reads_messages_and_presence_events() -> None:
    assert event_topic(_message("room.x", 1)) == "room.x"
    assert event_topic({"type": "topic.presence", "topic": "room.y"}) == "room.y"
    assert event_topic({"type": "deliver", "payload": {}}) is None
