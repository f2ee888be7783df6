"""Presence: who follows a topic. ``presence`` answers with the users; ``presence_diff`` frames announce changes.

Builds on the topics feature's hooks: a connection's first subscription to a
topic adds its presence entry, leaving removes it (``ws_service.presence_tracker``
keeps entries alive and announces joins and leaves as ``topic.presence``
events to the topic's group). Deleting this module (with its tracker,
``shared/presence.py``, its settings, docs and tests) removes presence.
"""

from __future__ import annotations

from typing import Any

from shared.presence import PresenceEntry
from ws_service.features.topics import JOINED_HOOK, LEFT_HOOK, authorized_topic, reported_as_unavailable, subscriptions
from ws_service.frames import DRAIN_HOOK, frames
from ws_service.kernel import KernelConsumer
from ws_service.presence_frames import parse_after
from ws_service.presence_tracker import TOPIC_PRESENCE_EVENT, encoded_diff, get_tracker, presence_reply

#: This feature's modules outside ``features/`` and its settings: only its own
#: files and tests named for it use them (tests/test_feature_files.py).
OWN_MODULES = ("ws_service.presence_tracker", "ws_service.presence_frames", "shared.presence")
SETTINGS_PREFIX = "PRESENCE_"


def _entry(consumer: KernelConsumer, topic: str) -> PresenceEntry:
    user = consumer.user
    return PresenceEntry(topic, consumer.scope["connection_id"], user.pk, user.get_username())


async def _joined(consumer: KernelConsumer, topic: str) -> None:
    with reported_as_unavailable("presence", topic):
        await get_tracker().join(_entry(consumer, topic))


async def _left(consumer: KernelConsumer, topic: str) -> None:
    await get_tracker().leave(_entry(consumer, topic))


async def _draining() -> None:
    await get_tracker().leave_all()


async def on_presence(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    topic = authorized_topic(consumer, message)
    after = parse_after(message)  # before the block below: a ProtocolError there would read as internal
    with reported_as_unavailable("presence", topic):
        reply = await presence_reply(topic, after)
    await consumer.reply(reply)


async def topic_presence(consumer: KernelConsumer, event: dict[str, Any]) -> None:
    if event["topic"] in subscriptions(consumer):
        await consumer.send_encoded(encoded_diff(event), "presence_diff")


frames.request("presence", on_presence)
frames.event(TOPIC_PRESENCE_EVENT, topic_presence)
frames.on(JOINED_HOOK, _joined)
frames.on(LEFT_HOOK, _left)
frames.on(DRAIN_HOOK, _draining)
frames.sends("presence", "presence_diff")
