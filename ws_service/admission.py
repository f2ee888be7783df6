"""A connect's Redis work in one pipelined round trip, shared by the connects arriving together.

Admitting an authenticated connection needs three things from Redis, in this order:

1. its per-user slot (``ws_service.connection_slots``: the atomic script);
2. the groups it joins that this process is not in yet (``Node.join_many``);
3. the revocation marks of its session and user groups (``shared.revocation``),
   read *after* the joins are applied: a revocation that lands before the
   join is seen as a mark, one after it reaches the connection as an event.

:func:`admit` hands them to one per-process :class:`~ws_service.coalesce.Coalescer`:
the first connect goes out at once, connects arriving meanwhile share the
next round trip. When the channel layer and the data Redis are one server
(one ``REDIS_URL``, or one Sentinel master: the compose and single-host
setups), a batch is one pipeline on one connection, in that order: the slot
scripts, the new groups' ``ZADD``/``EXPIRE``, then the marks' ``EXISTS``.

With ``CHANNEL_LAYER_SHARDS`` (or a layer on another server) the batch is
one pipeline per server, sent concurrently: the slot scripts on the data
Redis, and on each shard its groups' joins followed by their marks (a
group's mark lives on the group's shard, so the order that matters holds per
shard). That is still one round trip of latency, on several connections.

A refused slot (over ``WS_MAX_CONNECTIONS_PER_USER``) is not recorded as a
member, and the groups only it joined are left again at once: one more
round trip, paid by refused connects only.

Failures keep the documented outcomes (docs/failure-behaviour.md): when the
joins fail the call raises (the kernel closes with 4013; slots taken
meanwhile are recorded so the consumer gives them back); when only
the slot script fails the connection is let through uncounted; a mark that
cannot be read counts as set (the session is read again from the database).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from shared.redis_client import get_redis, is_data_redis
from shared.revocation import marks_by_shard
from ws_service.coalesce import Coalescer
from ws_service.connection_slots import SlotClaim, get_slot_tracker, queue_acquire
from ws_service.loop_local import LoopLocal
from ws_service.node import Member, get_node

logger = logging.getLogger("ws.admission")

LAYER_ERRORS = (RedisError, OSError)


@dataclass(frozen=True, slots=True)
class Ask:
    """One connect: who joins which groups, the slot it must take, the groups whose marks to check."""

    member: Member
    groups: Sequence[str]
    claim: SlotClaim | None = None
    marks: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Admitted:
    """What Redis said about one connect."""

    #: Over the per-user limit: the connection must be closed with 4429 (it joined nothing).
    refused: bool = False
    #: A revocation mark of its groups is set, or could not be read.
    revoked: bool = False


# A command's place in a batch: (pipeline number, position in that pipeline).
type _Ref = tuple[int, int]


class _Trip:
    """The pipelines of one batch: the data Redis's (number 0) and one per other layer shard."""

    def __init__(self, layer: Any, shared: bool) -> None:
        self.layer = layer
        self.pipes: list[Pipeline] = [get_redis().pipeline(transaction=False)]
        # Single host: every shard command goes into the data pipeline (the layer has one shard, 0).
        self._shared = shared
        self._shards: dict[int, int] = {}

    def data(self) -> tuple[int, Pipeline]:
        return 0, self.pipes[0]

    def shard(self, index: int) -> tuple[int, Pipeline]:
        if self._shared:
            return self.data()
        number = self._shards.get(index)
        if number is None:
            number = self._shards[index] = len(self.pipes)
            self.pipes.append(self.layer.connection(index).pipeline(transaction=False))
        return number, self.pipes[number]

    async def send(self) -> list[list[Any] | Exception]:
        """Every pipeline at once; each one's replies (errors in place) or its exception."""
        replies = await asyncio.gather(
            *(pipe.execute(raise_on_error=False) for pipe in self.pipes), return_exceptions=True
        )
        answers: list[list[Any] | Exception] = []
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply  # cancelled: not a Redis answer
            answers.append(reply)
        return answers


def _reply(replies: list[list[Any] | Exception], ref: _Ref) -> Any:
    """One command's reply, or the exception that it (or its whole pipeline) raised."""
    number, position = ref
    batch = replies[number]
    return batch if isinstance(batch, Exception) else batch[position]


class Admission:
    """This process's batcher of connects (one per event loop)."""

    def __init__(self) -> None:
        self._asks = Coalescer(self._admit_many, "admissions")
        # The layer last seen, and whether it is the data Redis (decided once per layer, not per batch).
        self._layer: tuple[Any, bool] | None = None

    @property
    def batches(self) -> int:
        """Round trips made so far (one per batch; for tests)."""
        return self._asks.batches

    async def __call__(self, ask: Ask) -> Admitted:
        return await self._asks(ask)

    async def _admit_many(self, asks: Sequence[Ask]) -> list[Admitted]:
        async def trip(layer: Any, new: list[str], channel: str) -> tuple[list[Admitted], Collection[int]]:
            return await self._trip(layer, asks, new, channel)

        return await get_node().join_many([(ask.member, ask.groups) for ask in asks], trip)

    async def _trip(
        self, layer: Any, asks: Sequence[Ask], new: list[str], channel: str
    ) -> tuple[list[Admitted], set[int]]:
        plan = _Trip(layer, self._shares_data_redis(layer))
        now = time.time()
        slots: list[_Ref | None] = []
        for ask in asks:
            number, pipe = plan.data()
            slots.append((number, len(pipe)) if ask.claim is not None else None)
            if ask.claim is not None:
                queue_acquire(pipe, ask.claim.slot, ask.claim.limit, now)
        joins: list[_Ref] = []
        for index, keys in layer.groups_by_shard(new, channel).items():
            number, pipe = plan.shard(index)
            for key in keys:
                joins.append((number, len(pipe)))
                layer.queue_group_add(pipe, key, channel, now)  # what group_add_many sends
        marks: list[list[_Ref]] = []
        for ask in asks:
            refs = []
            for index, keys in marks_by_shard(layer, list(ask.marks)).items():
                number, pipe = plan.shard(index)
                refs.append((number, len(pipe)))
                pipe.exists(*keys)
            marks.append(refs)
        replies = await plan.send()
        refused = self._settle_slots(asks, slots, replies)
        for ref in joins:
            failure = _reply(replies, ref)
            if isinstance(failure, Exception):
                raise failure  # not in the groups: nothing recorded, every connect of the batch gets 4013
        admitted = [
            Admitted(refused=index in refused, revoked=any(_marked(_reply(replies, ref)) for ref in refs))
            for index, refs in enumerate(marks)
        ]
        return admitted, refused

    def _shares_data_redis(self, layer: Any) -> bool:
        """Whether ``layer`` is one server, the data Redis: then a batch is one pipeline."""
        if self._layer is None or self._layer[0] is not layer:
            hosts: Sequence[Any] = getattr(layer, "hosts", ())
            self._layer = (layer, len(hosts) == 1 and is_data_redis(hosts[0]))
        return self._layer[1]

    def _settle_slots(
        self, asks: Sequence[Ask], slots: list[_Ref | None], replies: list[list[Any] | Exception]
    ) -> set[int]:
        """Record the slots taken (their consumers give them back); the indexes of the refused asks."""
        tracker = get_slot_tracker()
        refused: set[int] = set()
        for index, (ask, ref) in enumerate(zip(asks, slots, strict=True)):
            if ask.claim is None or ref is None:
                continue
            reply = _reply(replies, ref)
            if isinstance(reply, Exception):
                logger.warning("connection limit not checked, Redis unavailable: %s", reply)
            elif int(reply) == 1:
                ask.claim.taken = True
                tracker.hold(ask.claim.slot)
            else:
                refused.add(index)
        return refused


def _marked(reply: Any) -> bool:
    """An ``EXISTS`` reply: set, or unreadable (then the session is read again, as if revoked)."""
    return isinstance(reply, Exception) or int(reply) > 0


_admissions: LoopLocal[Admission] = LoopLocal(Admission)


def get_admission() -> Admission:
    """The admission of the running event loop (one per ws process)."""
    return _admissions.get()


async def admit(
    member: Member, groups: Sequence[str], *, claim: SlotClaim | None = None, marks: Sequence[str] = ()
) -> Admitted:
    """Take ``claim``'s slot, join ``groups`` (``Node.join``'s semantics), then read the revocation marks of ``marks``.

    One pipelined round trip shared with the connects arriving together (see
    the module docstring). Raises a Redis error when the groups could not be
    joined (nothing recorded). A refused connect joined nothing.
    """
    return await get_admission()(Ask(member, list(groups), claim, list(marks)))
