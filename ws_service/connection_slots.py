"""Per-user open-connection counting across every ws replica, kept in Redis.

Each open connection of a user is a member ``<connection_id>`` of the sorted
set ``<prefix>:conns:user:<user_id>``, scored by when it expires. Its process
refreshes it every ``WS_CONNECTION_TTL_SECONDS / 3``,
so a crashed replica's connections stop counting within TTL + TTL/3. Taking a
slot is one Lua script (drop expired members, count, add if below the limit),
hence atomic across replicas: two simultaneous connects can never both take
the last slot. A connect's script travels in its connect's one pipelined
round trip (``ws_service.admission``: with the groups it joins and the
revocation marks it checks), shared by the connects arriving together;
disconnects arriving together send their removals in one round trip
(``ws_service.coalesce``). Each script is still atomic, in order, so the
guarantee holds within a batch.

The limits middleware puts a :class:`SlotClaim` in the scope and hands the
connection over (it keeps no frame on the connection's stack). Whoever
admits the connection takes the slot (the kernel's connect, through the
admission) and gives it back when the connection ends, whatever the reason
(:func:`release_claim`: ``KernelConsumer.__call__`` does it as it returns).

The refresh is per process, not per connection: one pipelined round trip per
round, carrying one script call per ``REFRESH_BATCH`` slots (each call extends
all of its slots' members and keys). The per-user sets stay, so a crashed
process's members simply stop being extended and expire with their scores,
and counting on connect stays one script on one key. (A per-process key
listing its connections would make every connect check the liveness of every
other process holding the user's slots; extending scores in bulk costs the
same one round trip and keeps the connect path unchanged.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from shared.redis_client import get_redis
from ws_service.coalesce import Coalescer
from ws_service.loop_local import process_task

logger = logging.getLogger("ws.limits")

# Well below redis-py's default pool size (100), which the features and the channel checks share.
MAX_CONCURRENT_REDIS_CALLS = 32

# KEYS[1] the user's set; ARGV: now, expiry, member, limit, key ttl (seconds).
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Slots extended by one script call; a round sends ceil(slots / REFRESH_BATCH) calls in one pipeline.
REFRESH_BATCH = 500

# Extend live slots, or put back ones that vanished (Redis lost its data).
# KEYS the users' sets; ARGV: expiry, key ttl, then one member per key.
_REFRESH_MANY = """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[1], ARGV[i + 2])
  redis.call('EXPIRE', key, ARGV[2])
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class Slot:
    """One open connection of one user."""

    user_id: int
    connection_id: str

    @property
    def key(self) -> str:
        return user_key(self.user_id)


@dataclass(slots=True)
class SlotClaim:
    """The slot a connection must take on connect (``scope[SLOT_CLAIM_KEY]``); ``taken`` once it holds it."""

    slot: Slot
    limit: int
    taken: bool = False


# The scope key of a connection's :class:`SlotClaim`, set by ``ws_service.limits.ConnectionLimitMiddleware``.
SLOT_CLAIM_KEY = "connection_slot"


async def release_claim(claim: SlotClaim | None) -> None:
    """Give back a connection's slot when its claim took it (the connection ended, whatever the reason).

    Whoever took the slot calls it once the connection is over: the kernel as
    its ``__call__`` returns, an app of your own that took it with
    ``ws_service.admission.admit(..., claim=...)`` likewise. Once the process
    drained (:meth:`SlotTracker.release_all`) it costs nothing. When Redis
    cannot be reached it logs a warning: the slot then expires by itself
    (``WS_CONNECTION_TTL_SECONDS``), as nobody refreshes it any more.
    """
    if claim is None or not claim.taken:
        return
    claim.taken = False  # given back once, even if called again
    try:
        await get_slot_tracker().release(claim.slot)
    except (RedisError, OSError) as exc:
        logger.warning("could not release connection slot (it expires by itself): %s", exc)


def queue_acquire(pipe: Pipeline, slot: Slot, limit: int, now: float) -> None:
    """Queue the atomic script taking ``slot`` (its reply: 1 taken, 0 over ``limit``) on ``pipe``."""
    ttl = _ttl()
    pipe.eval(_ACQUIRE, 1, slot.key, now, now + ttl, slot.connection_id, limit, ttl * 2)


def _user_key_prefix() -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:conns:user:"


def user_key(user_id: int) -> str:
    """The Redis key holding a user's open connections."""
    return f"{_user_key_prefix()}{user_id}"


def _ttl() -> int:
    ttl: int = settings.WS_CONNECTION_TTL_SECONDS
    return ttl


async def open_connections(user_id: int) -> int:
    """How many live connections ``user_id`` has, on every replica."""
    return int(await get_redis().zcount(user_key(user_id), time.time(), "+inf"))


class SlotTracker:
    """Takes and releases this process's slots, and keeps them alive while open.

    The refresh task runs only while the process has open slots; a failed
    round is logged and the next one retries.
    """

    def __init__(self) -> None:
        self.slots: set[Slot] = set()
        self._task: asyncio.Task[None] | None = None
        # The refresh's script arguments (keys, members per batch), rebuilt only after the slots changed:
        # an idle process's round then costs one pipeline, not a pass over every slot.
        self._batches: list[tuple[list[str], list[str]]] | None = None
        # Slots released while a refresh is in flight (it may have put them back): removed again after it.
        self._released_in_round: list[Slot] | None = None
        # Slots given back by release_all (the process drains): their connections' own release is a no-op.
        self._released_early: set[Slot] = set()
        # redis-py's pool refuses callers beyond its size ("Too many connections")
        # instead of queueing them: a connect burst waits here instead.
        self._redis_calls = asyncio.Semaphore(MAX_CONCURRENT_REDIS_CALLS)
        # Connects and disconnects arriving together share one pipelined round trip each.
        self._acquires = Coalescer(self._acquire_many, "slot-acquires")
        self._releases = Coalescer(self._release_many, "slot-releases")

    async def acquire(self, slot: Slot, limit: int) -> bool:
        """Take a slot on its own; ``False`` when the user already has ``limit`` open connections.

        Calls arriving together share one pipelined round trip; each slot is
        still taken by its own atomic script. (A connect takes its slot in
        its admission's round trip instead, ``ws_service.admission``.)
        """
        taken = await self._acquires((slot, limit))
        if taken:
            self.hold(slot)
        return taken

    def hold(self, slot: Slot) -> None:
        """Record a slot its script took (:func:`queue_acquire`): refreshed from now on, until released."""
        self.slots.add(slot)
        self._batches = None
        if self._task is None or self._task.done():
            self._task = process_task(self._run(), "connection-slots")

    async def _acquire_many(self, asks: Sequence[tuple[Slot, int]]) -> list[bool]:
        async with self._redis_calls, get_redis().pipeline(transaction=False) as pipe:
            now = time.time()
            for slot, limit in asks:
                queue_acquire(pipe, slot, limit, now)
            results = await pipe.execute()
        return [int(taken) == 1 for taken in results]

    async def release(self, slot: Slot) -> None:
        """Give a slot back (idempotent). Disconnects arriving together share one round trip."""
        if slot in self._released_early:
            self._released_early.discard(slot)
            return
        self.slots.discard(slot)
        self._batches = None
        if self._released_in_round is not None:
            self._released_in_round.append(slot)
        await self._releases(slot)

    async def release_all(self) -> int:
        """Give back every slot of this process in one pipelined round trip (it drains); how many.

        Other replicas count the users' connections without them at once; each
        connection's own :meth:`release` then costs nothing.
        """
        slots = list(self.slots)
        self.slots.clear()
        self._batches = None
        self._released_early.update(slots)
        if self._released_in_round is not None:
            self._released_in_round.extend(slots)
        if slots:
            await self._release_many(slots)
        return len(slots)

    async def _release_many(self, slots: Sequence[Slot]) -> list[None]:
        async with self._redis_calls, get_redis().pipeline(transaction=False) as pipe:
            for slot in slots:
                pipe.zrem(slot.key, slot.connection_id)
            await pipe.execute()
        return [None] * len(slots)

    def refresh_batches(self) -> list[tuple[list[str], list[str]]]:
        """The refresh's arguments: per ``REFRESH_BATCH`` slots, their keys and members (cached until a change)."""
        if self._batches is None:
            slots = list(self.slots)
            prefix = _user_key_prefix()
            self._batches = [
                ([f"{prefix}{slot.user_id}" for slot in batch], [slot.connection_id for slot in batch])
                for batch in (slots[start : start + REFRESH_BATCH] for start in range(0, len(slots), REFRESH_BATCH))
            ]
        return self._batches

    async def tick(self) -> None:
        """One round: extend every slot this process holds, in one pipelined round trip."""
        batches = self.refresh_batches()
        if not batches:
            return
        ttl = _ttl()
        released: list[Slot] = []
        self._released_in_round = released
        try:
            async with self._redis_calls, get_redis().pipeline(transaction=False) as pipe:
                expiry = time.time() + ttl
                for keys, members in batches:
                    pipe.eval(_REFRESH_MANY, len(keys), *keys, expiry, ttl * 2, *members)
                await pipe.execute()
        finally:
            self._released_in_round = None
        # Released while being refreshed: do not resurrect them (rare, so one more call only then).
        stale = [slot for slot in released if slot not in self.slots]
        if stale:
            async with self._redis_calls, get_redis().pipeline(transaction=False) as pipe:
                for slot in stale:
                    pipe.zrem(slot.key, slot.connection_id)
                await pipe.execute()

    async def _run(self) -> None:
        interval = _ttl() / 3
        while self.slots:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                logger.warning("connection slot refresh failed, retrying in %.0fs: %s", interval, exc)


_trackers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlotTracker] = weakref.WeakKeyDictionary()


def get_slot_tracker() -> SlotTracker:
    """The tracker of the running event loop (one per ws process)."""
    loop = asyncio.get_running_loop()
    tracker = _trackers.get(loop)
    if tracker is None:
        tracker = _trackers[loop] = SlotTracker()
    return tracker
