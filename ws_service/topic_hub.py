"""Fan-out inside a ws process: one channel-layer membership per topic, not per connection.

With one group membership per connection, a publish to a topic with N
subscribers makes channels-redis store N copies in Redis, and every process
pops its share one blocking read at a time. Here each process joins a topic's
group once, with the hub's own channel, when its first local connection
subscribes (and leaves when its last one goes). The hub reads one copy per
process and hands it to every local subscriber's queue; the consumer then
applies its ordering rules (``Subscriptions``) as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from shared.messaging import TOPIC_MESSAGE_EVENT
from shared.topics import topic_group
from ws_service.loop_local import LoopLocal
from ws_service.protocol import encode

logger = logging.getLogger("ws.topic_hub")

LAYER_ERRORS = (RedisError, OSError)
# A topic message's frame, JSON-encoded once here instead of once per connection.
ENCODED_KEY = "encoded"
RETRY_MAX_SECONDS = 5.0


class LocalSubscriber(Protocol):
    def deliver_local(self, event: dict[str, Any]) -> None:
        """Queue a topic event for this connection (never blocks)."""


def event_topic(event: dict[str, Any]) -> str | None:
    """The topic a topic-group event belongs to (messages carry it in their payload)."""
    topic = event.get("topic")
    if topic is None and isinstance(event.get("message"), dict):
        topic = event["message"].get("topic")
    return topic if isinstance(topic, str) else None


class TopicHub:
    """This process's topic memberships and the task that fans their events out."""

    def __init__(self) -> None:
        self.local: dict[str, set[LocalSubscriber]] = {}
        self.channel: str | None = None
        self._membership = asyncio.Lock()  # keeps each topic's group_add/group_discard in order
        self._task: asyncio.Task[None] | None = None

    def _layer(self) -> Any:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS is not configured"
        return layer

    async def subscribe(self, topic: str, subscriber: LocalSubscriber) -> None:
        """Deliver ``topic``'s events to ``subscriber``; the group is joined by the first one.

        Returns once this process is in the topic's group, so a snapshot read
        afterwards misses nothing. Raises (and records nothing) if Redis fails.
        """
        async with self._membership:
            if topic not in self.local:
                layer = self._layer()
                if self.channel is None:
                    self.channel = await layer.new_channel("specific")
                await layer.group_add(topic_group(topic), self.channel)
                self.local[topic] = set()
            self.local[topic].add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="topic-hub")

    async def unsubscribe(self, topic: str, subscriber: LocalSubscriber) -> None:
        """Stop delivering ``topic`` to ``subscriber``; the last one leaves the group."""
        async with self._membership:
            members = self.local.get(topic)
            if members is None:
                return
            members.discard(subscriber)
            if members:
                return
            del self.local[topic]
            if self.channel is not None:
                await self._layer().group_discard(topic_group(topic), self.channel)

    async def rejoin(self) -> None:
        """Join every topic's group again (after Redis lost them)."""
        if self.channel is None:
            return
        layer = self._layer()
        async with self._membership:
            for topic in list(self.local):
                await layer.group_add(topic_group(topic), self.channel)

    def dispatch(self, event: dict[str, Any]) -> int:
        """Hand ``event`` to every local subscriber of its topic; how many got it."""
        topic = event_topic(event)
        members = self.local.get(topic) if topic is not None else None
        if not members:
            return 0
        if event.get("type") == TOPIC_MESSAGE_EVENT:
            event[ENCODED_KEY] = encode(event["message"])
        for subscriber in tuple(members):
            subscriber.deliver_local(event)
        return len(members)

    async def _run(self) -> None:
        assert self.channel is not None
        layer = self._layer()
        delay = 0.25
        while self.local:
            try:
                event = await layer.receive(self.channel)
            except Exception as exc:  # the hub must outlive any layer failure: every topic of the process depends on it
                log = logger.debug if isinstance(exc, LAYER_ERRORS) else logger.exception
                log("topic hub receive failed, retrying in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = 0.25
            self.dispatch(event)


hubs: LoopLocal[TopicHub] = LoopLocal(TopicHub)


def get_hub() -> TopicHub:
    """The hub of the running event loop (one per ws process)."""
    return hubs.get()
