"""The per-process node: one channel-layer channel and one membership per group for the whole process.

Connections never touch the channel layer themselves. A connection asks the
node to :meth:`Node.join` groups (each topic it follows; on connect its user,
its session and ``broadcast`` through :meth:`Node.join_many`, which lets the
connect admission carry the joins in its one round trip,
``ws_service.admission``); the node joins a group in Redis only when its first local
member needs it, and leaves it when the last one goes. Redis thus holds one
membership per process per group, and a ``group_send`` stores one copy per
process, not one per connection.

The node reads its one channel in one task and hands each event to every
local member of the event's group (the group's name travels in the event,
see :data:`shared.channel_layer.GROUP_KEY`); the connection then dispatches
it by its ``type`` as Channels does (``"chat.message"`` runs
``chat_message``). A topic message is JSON-encoded once here for every local
subscriber.

Other per-process helpers (the authentication cache) follow the node without
the node knowing them: :meth:`Node.observe` sees every event of a type before
its members do, :meth:`Node.on_group_left` hears of each group the process
leaves, and :meth:`Node.on_state_lost` of a :meth:`Node.rejoin` after Redis
lost the memberships (events sent meanwhile may be lost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import Any, Protocol

from channels.layers import get_channel_layer
from redis.exceptions import RedisError

from shared.channel_layer import GROUP_KEY
from shared.messaging import TOPIC_MESSAGE_EVENT
from shared.topics import topic_group
from ws_service.loop_local import LoopLocal, process_task
from ws_service.protocol import encode

logger = logging.getLogger("ws.node")

LAYER_ERRORS = (RedisError, OSError)
# A topic message's frame, JSON-encoded once here instead of once per connection.
ENCODED_KEY = "encoded"
RETRY_MAX_SECONDS = 5.0


class Member(Protocol):
    def deliver_local(self, event: dict[str, Any]) -> None:
        """Queue an event for this connection (never blocks)."""


def event_group(event: dict[str, Any]) -> str | None:
    """The group an event was sent to; events without the name (a stock layer) fall back to their topic."""
    group = event.get(GROUP_KEY)
    if isinstance(group, str):
        return group
    topic = event.get("topic")
    if topic is None and isinstance(event.get("message"), dict):
        topic = event["message"].get("topic")
    return topic_group(topic) if isinstance(topic, str) else None


class Node:
    """This process's group memberships, its channel and the task that fans events out."""

    def __init__(self) -> None:
        self.local: dict[str, set[Member]] = {}
        # The reverse index: a member's groups (a disconnect must not scan every group of the process).
        self._member_groups: dict[Member, set[str]] = {}
        self.channel: str | None = None
        self._membership = asyncio.Lock()  # keeps each group's group_add/group_discard in order
        self._task: asyncio.Task[None] | None = None
        self.refreshed_at = time.monotonic()
        self._observers: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        self._left: list[Callable[[str], None]] = []
        self._lost: list[Callable[[], None]] = []
        # Groups left in Redis all at once by :meth:`close`: their members' leaves cost no round trip.
        self._abandoned: set[str] = set()
        #: Set by :meth:`close`: events are no longer handed to the (closing) connections.
        self.closed = False

    def observe(self, event_type: str, observer: Callable[[dict[str, Any]], None]) -> None:
        """Call ``observer(event)`` for every event of ``event_type``, before handing it to members."""
        self._observers.setdefault(event_type, []).append(observer)

    def on_group_left(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(group)`` when the last local member of ``group`` leaves it."""
        self._left.append(listener)

    def on_state_lost(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` when :meth:`rejoin` restores memberships Redis lost."""
        self._lost.append(listener)

    def _layer(self) -> Any:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS is not configured"
        return layer

    async def join(self, member: Member, groups: Iterable[str]) -> None:
        """Deliver the events of ``groups`` to ``member``: the one call to join groups.

        Groups this process is not in yet are joined in Redis in one pipelined
        round trip (none if every group already has a local member). Returns
        once the process is in every group, so a snapshot read afterwards
        misses nothing. Raises, and records nothing, if Redis fails.
        """

        async def add(layer: Any, new: list[str], channel: str) -> tuple[None, Collection[int]]:
            if new:
                await layer.group_add_many(new, channel)
            return None, ()

        await self.join_many([(member, list(groups))], add)

    async def join_many[R](
        self,
        joins: Sequence[tuple[Member, Sequence[str]]],
        send: Callable[[Any, list[str], str], Awaitable[tuple[R, Collection[int]]]],
    ) -> R:
        """:meth:`join` for several members at once, in a round trip ``send`` makes (the connect admission's).

        Under the membership lock, ``send(layer, new, channel)`` must add
        ``channel`` to the ``new`` groups (those no local member holds yet) in
        Redis, and may carry other commands in the same round trip; it returns
        its result and the indexes of ``joins`` refused meanwhile. Those are not
        recorded, and new groups no recorded member wants are left again at
        once (one more round trip, only then; a failure is logged, the stale
        membership only costs unread copies). If ``send`` raises, nothing is
        recorded.
        """
        async with self._membership:
            new = [
                group for group in dict.fromkeys(g for _, groups in joins for g in groups) if group not in self.local
            ]
            layer = self._layer()
            if self.channel is None:
                self.channel = await layer.new_channel("specific")  # a name only: no Redis call
            result, refused = await send(layer, new, self.channel)
            self._abandoned.difference_update(new)
            for index, (member, groups) in enumerate(joins):
                if index in refused:
                    continue
                for group in groups:
                    self.local.setdefault(group, set()).add(member)
                self._member_groups.setdefault(member, set()).update(groups)
            unused = [group for group in new if group not in self.local]
            if unused:
                try:
                    await layer.group_discard_many(unused, self.channel)
                except LAYER_ERRORS as exc:
                    logger.warning("could not leave the groups of refused connections %s: %s", unused, exc)
        if self.local and (self._task is None or self._task.done()):
            self._task = process_task(self._run(), "ws-node")
        return result

    async def leave(self, member: Member, groups: Iterable[str]) -> None:
        """Stop delivering ``groups`` to ``member``; groups left without local members are left in Redis.

        The local bookkeeping is updated even when Redis fails (then raises):
        a stale membership only costs an unread copy until the group expires.
        Groups :meth:`close` already left in Redis cost no round trip, and do
        not wait for it: while draining, a connection's leave is bookkeeping
        only, done at once even while :meth:`close`'s round trip is on its way.
        """
        groups = list(dict.fromkeys(groups))
        if self._abandoned.issuperset(groups):
            self._forget(member, groups)  # no Redis call, no await: nothing to keep in order
            return
        async with self._membership:
            gone = self._forget(member, groups)
            if gone and self.channel is not None:
                await self._layer().group_discard_many(gone, self.channel)

    def _forget(self, member: Member, groups: list[str]) -> list[str]:
        """Drop ``member`` from ``groups`` locally; the groups left without members that Redis still holds."""
        gone: list[str] = []
        own = self._member_groups.get(member, set())
        for group in groups:
            own.discard(group)
            members = self.local.get(group)
            if members is None:
                continue
            members.discard(member)
            if not members:
                del self.local[group]
                for listener in self._left:
                    listener(group)
                if group in self._abandoned:
                    self._abandoned.discard(group)
                else:
                    gone.append(group)
        if not own:
            self._member_groups.pop(member, None)
        return gone

    async def close(self) -> None:
        """Leave every group in Redis in one pipelined round trip: the process is draining.

        The memberships are this process's channel's only; its connections are
        being closed (1012), so nothing needs their events any more. Leaving
        them all now spares one round trip per connection (a user's and a
        session's groups are left by their last local member) and stops
        events for closing connections. The local bookkeeping stays until
        each connection leaves; events already on their way are dropped (a
        reconnecting client replays what it missed with ``since``). Raises if
        Redis fails (the memberships then expire with the group, ``group_expiry``).
        """
        self.closed = True
        groups = list(self.local)
        self._abandoned.update(groups)  # at once: a leave from here on skips these
        if not groups or self.channel is None:
            return
        async with self._membership:
            still = [group for group in groups if group in self._abandoned or group not in self.local]
            if still:
                await self._layer().group_discard_many(still, self.channel)

    def groups_of(self, member: Member) -> list[str]:
        """The groups ``member`` is in."""
        return list(self._member_groups.get(member, ()))

    async def leave_all(self, member: Member) -> None:
        """Leave every group ``member`` is in."""
        await self.leave(member, self.groups_of(member))

    async def rejoin(self, *, lost: bool = True) -> None:
        """Join every group again (after Redis lost them): one pipelined round trip.

        ``lost`` (the default) tells the :meth:`on_state_lost` listeners, at once:
        events sent while the memberships were gone never arrive.
        """
        if self.channel is None:
            return
        if lost:
            for listener in self._lost:
                listener()
        async with self._membership:
            groups = [group for group in self.local if group not in self._abandoned]  # none left by close
            if groups:
                await self._layer().group_add_many(groups, self.channel)
            self.refreshed_at = time.monotonic()

    async def refresh_if_due(self) -> bool:
        """Re-add every membership once half the layer's ``group_expiry`` has passed since the last time.

        channels-redis drops a membership older than ``group_expiry`` (a day
        by default) on the next ``group_send``; the node's memberships live as
        long as the process, so they are renewed well before that.
        """
        if time.monotonic() - self.refreshed_at < self._layer().group_expiry / 2:
            return False
        await self.rejoin(lost=False)
        return True

    def dispatch(self, event: dict[str, Any]) -> int:
        """Hand ``event`` to every local member of its group; how many got it (none once closed).

        Observers see it even once closed (the authentication cache stays exact).
        """
        group = event_group(event)
        observers = self._observers.get(event.get("type"))  # type: ignore[arg-type]
        if observers is not None and group is not None:
            for observer in observers:
                observer(event)
        if self.closed:
            return 0
        members = self.local.get(group) if group is not None else None
        if not members:
            return 0
        if event.get("type") == TOPIC_MESSAGE_EVENT and isinstance(event.get("message"), dict):
            event[ENCODED_KEY] = encode(event["message"])
        for member in tuple(members):
            member.deliver_local(event)
        return len(members)

    async def _run(self) -> None:
        assert self.channel is not None
        layer = self._layer()
        delay = 0.25
        while self.local:
            try:
                event = await layer.receive(self.channel)
            except Exception as exc:  # the node must outlive any layer failure: every connection depends on it
                log = logger.debug if isinstance(exc, LAYER_ERRORS) else logger.exception
                log("node receive failed, retrying in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = 0.25
            try:
                self.dispatch(event)
            except Exception:  # one malformed event must not stop every other one
                logger.exception("could not dispatch an event of type %r", event.get("type"))


_nodes: LoopLocal[Node] = LoopLocal(Node)


def get_node() -> Node:
    """The node of the running event loop (one per ws process)."""
    return _nodes.get()
