"""One per ws process: keeps its connections' presence entries alive and sweeps dead ones."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from shared import presence
from shared.presence import PresenceEntry
from shared.topics import topic_group
from ws_service.loop_local import LoopLocal

logger = logging.getLogger("ws.presence")

TOPIC_PRESENCE_EVENT = "topic.presence"


async def announce(
    topic: str, *, joined: list[dict[str, Any]] | None = None, left: list[dict[str, Any]] | None = None
) -> None:
    """Tell a topic's subscribers, on every replica, who joined or left."""
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(
        topic_group(topic), {"type": TOPIC_PRESENCE_EVENT, "topic": topic, "joined": joined or [], "left": left or []}
    )


class PresenceTracker:
    """Refreshes this process's entries every TTL/3 and sweeps expired ones (any replica's).

    The background task runs only while the process has subscribed
    connections; a failure in one round is logged and the next round retries.
    """

    def __init__(self) -> None:
        self.entries: set[PresenceEntry] = set()
        self._task: asyncio.Task[None] | None = None

    async def join(self, entry: PresenceEntry) -> None:
        self.entries.add(entry)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="presence-tracker")
        if await presence.join(entry):
            await announce(entry.topic, joined=[entry.user])

    async def leave(self, entry: PresenceEntry) -> None:
        self.entries.discard(entry)
        if await presence.leave(entry):
            await announce(entry.topic, left=[entry.user])

    async def tick(self) -> None:
        """One round: refresh own entries (re-joining lost ones), then sweep expired ones."""
        for entry in list(self.entries):
            if await presence.refresh(entry):
                await announce(entry.topic, joined=[entry.user])
        for topic, left in (await presence.sweep()).items():
            await announce(topic, left=left)

    async def _run(self) -> None:
        interval = settings.PRESENCE_TTL_SECONDS / 3
        while self.entries:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                logger.warning("presence round failed, retrying in %.0fs: %s", interval, exc)


_trackers: LoopLocal[PresenceTracker] = LoopLocal(PresenceTracker)


def get_tracker() -> PresenceTracker:
    """The tracker of the running event loop (one per ws process)."""
    return _trackers.get()
