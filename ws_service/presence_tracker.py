"""One per ws process: keeps its connections' presence entries alive, sweeps dead ones, and batches diffs.

Refresh and sweep are per process: every ``PRESENCE_TTL_SECONDS / 3`` one
pipelined round trip extends all of the process's entries, and two more sweep
every due topic (``shared.presence``), however many connections it holds.

Joins and leaves are not announced one by one. The tracker collects them per
topic (a join and a leave of the same user in between cancel out) and sends
at most one ``presence_diff`` per topic every ``PRESENCE_DIFF_INTERVAL_SECONDS``
(the first change after a quiet interval goes out at once). So N users joining
a topic cost each subscriber about one frame per interval, not N. A topic with
more than ``PRESENCE_DIFF_MAX_SUBSCRIBERS`` users gets no diffs at all: its
clients page through ``presence`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from shared import presence
from shared.presence import Change, PresenceEntry
from shared.topics import topic_group
from ws_service.coalesce import Coalescer
from ws_service.loop_local import LoopLocal, process_task
from ws_service.presence_frames import diff_frames, presence_page
from ws_service.protocol import encode
from ws_service.registry import registry

logger = logging.getLogger("ws.presence")

TOPIC_PRESENCE_EVENT = "topic.presence"
# A diff event's frame, JSON-encoded once for every local subscriber.
ENCODED_KEY = "encoded"
LAYER_ERRORS = (RedisError, OSError)


def diff_interval() -> float:
    interval: float = settings.PRESENCE_DIFF_INTERVAL_SECONDS
    return interval


def diffs_enabled(size: int) -> bool:
    """Whether a topic of ``size`` users gets ``presence_diff`` frames."""
    limit: int = settings.PRESENCE_DIFF_MAX_SUBSCRIBERS
    return size <= limit


async def announce(
    topic: str, *, joined: list[dict[str, Any]] | None = None, left: list[dict[str, Any]] | None = None
) -> None:
    """Tell a topic's subscribers, on every replica, who joined or left (split to fit the frame limit)."""
    layer = get_channel_layer()
    assert layer is not None
    for frame in diff_frames(topic, joined or [], left or []):
        await layer.group_send(
            topic_group(topic),
            {"type": TOPIC_PRESENCE_EVENT, "topic": topic, "joined": frame["joined"], "left": frame["left"]},
        )


def encoded_diff(event: dict[str, Any]) -> str:
    """A diff event's ``presence_diff`` frame as JSON text, encoded once per event and process."""
    text = event.get(ENCODED_KEY)
    if not isinstance(text, str):
        frame = {"type": "presence_diff", "topic": event["topic"], "joined": event["joined"], "left": event["left"]}
        text = event[ENCODED_KEY] = encode(frame)
    return text


async def presence_reply(topic: str, after: tuple[str, int] | None) -> dict[str, Any]:
    """The reply to a ``presence`` request: the page after ``after`` that fits the frame limit (``presence_frames``)."""
    users = await presence.users(topic)
    return presence_page(topic, users, after, diffs=diffs_enabled(len(users)))


@dataclass(slots=True)
class PendingDiff:
    """A topic's joins and leaves not yet announced, by user id, and its latest user count."""

    size: int = 0
    joined: dict[int, dict[str, Any]] = field(default_factory=dict)
    left: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, change: Change) -> None:
        self.size = change.size
        for user in change.joined:
            if self.left.pop(user["id"], None) is None:  # left and back within the interval: no change
                self.joined[user["id"]] = user
        for user in change.left:
            if self.joined.pop(user["id"], None) is None:
                self.left[user["id"]] = user


class PresenceTracker:
    """Refreshes this process's entries every TTL/3, sweeps expired ones (any replica's), and batches diffs.

    The refresh task runs only while the process has subscribed connections,
    the diff task only while changes wait; a failure in one round is logged
    and the next round retries.
    """

    def __init__(self) -> None:
        self.entries: set[PresenceEntry] = set()
        self.pending: dict[str, PendingDiff] = {}
        self._last_sent: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Joins and leaves that arrive together (a subscribe storm, a drain) share one pipelined round trip.
        self._joins = Coalescer(presence.join_many_counted, "presence-joins")
        self._leaves = Coalescer(presence.leave_many_counted, "presence-leaves")
        # While draining, the leaves' immediate flushes: those arriving together share one flush.
        self._drain_flushes = Coalescer(self._flush_now, "presence-drain-diffs")
        # Entries removed by leave_all (the process drains): their connections' own leave is a no-op.
        self._left_early: set[PresenceEntry] = set()

    async def join(self, entry: PresenceEntry) -> None:
        """Add an entry. Joins that arrive together (a subscribe storm) share one pipelined round trip."""
        self.entries.add(entry)
        if self._task is None or self._task.done():
            self._task = process_task(self._run(), "presence-tracker")
        self.record(await self._joins(entry))

    async def leave(self, entry: PresenceEntry) -> None:
        """Remove an entry (leaves arriving together share a round trip); while draining, the diff goes out now."""
        if entry in self._left_early:
            self._left_early.discard(entry)
            return
        self.entries.discard(entry)
        self.record(await self._leaves(entry))
        if registry.draining:  # the process exits once its connections are cleaned up: nothing may wait
            await self._drain_flushes(None)  # one diff per topic for every leave recorded so far, not one per leave

    async def leave_all(self) -> None:
        """Remove every entry of this process in one pipelined round trip and announce the diffs now (it drains).

        A user still connected through another process stays present (entries
        are per connection). Each connection's own :meth:`leave` then costs nothing.
        """
        entries = list(self.entries)
        self.entries.clear()
        self._left_early.update(entries)
        for change in await presence.leave_many_counted(entries):
            self.record(change)
        await self.flush(now=True)

    async def _flush_now(self, calls: Sequence[None]) -> list[None]:
        await self.flush(now=True)
        return [None] * len(calls)

    def record(self, change: Change) -> None:
        """Queue a change for the topic's next diff."""
        pending = self.pending.get(change.topic)
        if pending is None:
            if not change.joined and not change.left:
                return
            pending = self.pending[change.topic] = PendingDiff()
        pending.add(change)
        if self._flusher is None or self._flusher.done():
            self._flusher = process_task(self._flush_loop(), "presence-diffs")
        self._wake.set()

    async def tick(self) -> None:
        """One round: refresh own entries (re-joining lost ones), then sweep expired ones."""
        for change in await presence.refresh_all(list(self.entries)):
            self.record(change)
        for change in await presence.sweep_counted():
            self.record(change)

    async def flush(self, *, now: bool = False) -> None:
        """Announce every topic whose interval has passed since its last diff (every pending one with ``now``)."""
        at = asyncio.get_running_loop().time()
        interval = 0.0 if now else diff_interval()
        self._last_sent = {topic: sent for topic, sent in self._last_sent.items() if at - sent < interval}
        for topic in [topic for topic in self.pending if topic not in self._last_sent]:
            diff = self.pending.pop(topic, None)  # None: a concurrent flush (while draining) took it
            if diff is None or (not diff.joined and not diff.left):
                continue
            self._last_sent[topic] = at
            if not diffs_enabled(diff.size):
                continue
            try:
                await announce(topic, joined=list(diff.joined.values()), left=list(diff.left.values()))
            except LAYER_ERRORS as exc:
                logger.warning("presence diff for %s not sent: %s", topic, exc, extra={"topic": topic})

    def _next_due(self) -> float:
        """Seconds until the next pending topic may be announced."""
        now = asyncio.get_running_loop().time()
        interval = diff_interval()
        due = [self._last_sent[topic] + interval - now for topic in self.pending if topic in self._last_sent]
        return max(0.0, min(due)) if len(due) == len(self.pending) else 0.0

    async def _flush_loop(self) -> None:
        while self.pending:
            self._wake.clear()
            await self.flush()
            if not self.pending:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(self._next_due(), 0.001))

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
