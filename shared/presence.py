"""Who is subscribed to a topic, across every ws replica, kept in Redis.

Each subscribed connection is a member ``<connection_id>|<user_id>|<username>``
of a sorted set per topic, scored by when it expires. Its process refreshes it
every ``PRESENCE_TTL_SECONDS / 3``. A per-topic hash counts each user's live
connections, so a diff is emitted only for a user's first join and last leave.

One sorted set of *deadlines* holds every topic that has entries, scored by
its earliest expiry. A sweep reads only the topics whose deadline has passed
(at most ``SWEEP_BATCH`` per round), so its cost follows the live and expired
entries, never the number of topics ever used. Every step is a Lua script,
hence atomic: a topic whose last entry leaves (or expires) drops out of the
deadlines and its hash is deleted in the same step, so no concurrent join can
slip in between; and when several replicas sweep the entries of a crashed one,
each expired entry is removed (and counted down) exactly once. A crashed
replica's users therefore disappear within the TTL plus one sweep period.

Refreshes and sweeps are per process, not per entry: ``refresh_all`` sends
one script call per topic (and per ``REFRESH_BATCH`` entries) in one
pipelined round trip, and ``sweep_counted`` takes two round trips whatever
the number of due topics. Every script also returns the topic's user count,
which the ws tracker uses to stop diffs in large topics.

Earlier versions kept an ever-growing plain set of topic names
(``<prefix>:presence:topics``); sweeps drain it ``LEGACY_BATCH`` topics at a
time, so entries written by an older replica still expire.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from shared.redis_client import get_redis

# Topics swept per round (the earliest deadlines first); the rest wait for the next round.
SWEEP_BATCH = 1000
# Entries of one topic refreshed by one script call.
REFRESH_BATCH = 500
# Topics taken per round from an older version's set of topic names.
LEGACY_BATCH = 100

# KEYS[1] the topic's entries, KEYS[2] its per-user counts, KEYS[3] the deadlines; the topic is ARGV[#ARGV].
# After any change: the topic's deadline is its earliest expiry, or it leaves the deadlines once empty.
_TRACK = """
local function track(topic)
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', KEYS[3], first[2], topic)
  else
    redis.call('ZREM', KEYS[3], topic)
    redis.call('DEL', KEYS[2])
  end
end
"""

# Every script returns the topic's user count (HLEN of the per-user counts) first: the
# tracker uses it to stop diffs above PRESENCE_DIFF_MAX_SUBSCRIBERS.
_JOIN = (
    _TRACK
    + """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local n = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
track(ARGV[4])
return {redis.call('HLEN', KEYS[2]), n}
"""
)

# Refresh this process's live entries of one topic; re-join those that are gone (swept, or
# Redis lost its data). ARGV: expiry, topic, then member and user id per entry.
# Returns the count, then the members that were re-joined as their user's first.
_REFRESH_MANY = (
    _TRACK
    + """
local rejoined = {}
for i = 3, #ARGV, 2 do
  local member = ARGV[i]
  if not redis.call('ZSCORE', KEYS[1], member) then
    if redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1) == 1 then
      table.insert(rejoined, member)
    end
  end
  redis.call('ZADD', KEYS[1], ARGV[1], member)
end
track(ARGV[2])
table.insert(rejoined, 1, redis.call('HLEN', KEYS[2]))
return rejoined
"""
)

_LEAVE = (
    _TRACK
    + """
local last = 0
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local n = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
  if n <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    last = 1
  end
end
track(ARGV[3])
return {redis.call('HLEN', KEYS[2]), last}
"""
)

# Returns the count, then "<user id>|<username>" of each user whose last entry expired.
_SWEEP = (
    _TRACK
    + """
local left = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local uid, name = string.match(member, '^[^|]+|([^|]+)|(.*)$')
    local n = redis.call('HINCRBY', KEYS[2], uid, -1)
    if n <= 0 then
      redis.call('HDEL', KEYS[2], uid)
      table.insert(left, uid .. '|' .. name)
    end
  end
end
track(ARGV[2])
table.insert(left, 1, redis.call('HLEN', KEYS[2]))
return left
"""
)


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One subscribed connection."""

    topic: str
    connection_id: str
    user_id: int
    username: str

    @property
    def member(self) -> str:
        return f"{self.connection_id}|{self.user_id}|{self.username}"

    @property
    def user(self) -> dict[str, Any]:
        return {"id": self.user_id, "username": self.username}


def _prefix() -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:presence"


def _keys(topic: str) -> list[str]:
    """The topic's entries, its per-user counts, and the deadlines of every topic."""
    prefix = _prefix()
    return [f"{prefix}:conns:{topic}", f"{prefix}:users:{topic}", deadlines_key()]


def deadlines_key() -> str:
    """The sorted set of topics with entries, scored by their earliest expiry."""
    return f"{_prefix()}:deadlines"


def legacy_topics_key() -> str:
    """An older version's set of every topic ever joined (drained by sweeps)."""
    return f"{_prefix()}:topics"


def _expiry() -> float:
    ttl: int = settings.PRESENCE_TTL_SECONDS
    return time.time() + ttl


@dataclass(frozen=True, slots=True)
class Change:
    """What one step did to a topic: the users that joined or left, and how many users it has now."""

    topic: str
    size: int
    joined: list[dict[str, Any]] = field(default_factory=list)
    left: list[dict[str, Any]] = field(default_factory=list)


async def join_counted(entry: PresenceEntry) -> Change:
    """Add a connection; the user is in ``joined`` when it is their first in the topic."""
    size, count = await get_redis().eval(
        _JOIN, 3, *_keys(entry.topic), entry.member, _expiry(), entry.user_id, entry.topic
    )
    return Change(entry.topic, int(size), joined=[entry.user] if int(count) == 1 else [])


async def join_many_counted(entries: Sequence[PresenceEntry]) -> list[Change]:
    """:func:`join_counted` for several entries in one pipelined round trip (each join still atomic)."""
    if not entries:
        return []
    async with get_redis().pipeline(transaction=False) as pipe:
        expiry = _expiry()
        for entry in entries:
            pipe.eval(_JOIN, 3, *_keys(entry.topic), entry.member, expiry, entry.user_id, entry.topic)
        results = await pipe.execute()
    return [
        Change(entry.topic, int(size), joined=[entry.user] if int(count) == 1 else [])
        for entry, (size, count) in zip(entries, results, strict=True)
    ]


async def leave_counted(entry: PresenceEntry) -> Change:
    """Remove a connection; the user is in ``left`` when it was their last in the topic."""
    size, last = await get_redis().eval(_LEAVE, 3, *_keys(entry.topic), entry.member, entry.user_id, entry.topic)
    return Change(entry.topic, int(size), left=[entry.user] if int(last) == 1 else [])


async def leave_many_counted(entries: Sequence[PresenceEntry]) -> list[Change]:
    """:func:`leave_counted` for several entries in one pipelined round trip (each leave still atomic)."""
    if not entries:
        return []
    async with get_redis().pipeline(transaction=False) as pipe:
        for entry in entries:
            pipe.eval(_LEAVE, 3, *_keys(entry.topic), entry.member, entry.user_id, entry.topic)
        results = await pipe.execute()
    return [
        Change(entry.topic, int(size), left=[entry.user] if int(last) == 1 else [])
        for entry, (size, last) in zip(entries, results, strict=True)
    ]


async def join(entry: PresenceEntry) -> bool:
    """Add a connection; ``True`` when it is the user's first in the topic."""
    return bool((await join_counted(entry)).joined)


async def leave(entry: PresenceEntry) -> bool:
    """Remove a connection; ``True`` when it was the user's last in the topic."""
    return bool((await leave_counted(entry)).left)


async def refresh_all(entries: Iterable[PresenceEntry]) -> list[Change]:
    """Extend every given entry in one pipelined round trip (one script call per topic and batch).

    Entries that were gone are re-joined; their users are in ``joined`` when
    that made them present again.
    """
    by_topic: dict[str, list[PresenceEntry]] = {}
    for entry in entries:
        by_topic.setdefault(entry.topic, []).append(entry)
    if not by_topic:
        return []
    expiry = _expiry()
    calls: list[str] = []
    async with get_redis().pipeline(transaction=False) as pipe:
        for topic, members in by_topic.items():
            for start in range(0, len(members), REFRESH_BATCH):
                args: list[Any] = [expiry, topic]
                for entry in members[start : start + REFRESH_BATCH]:
                    args += [entry.member, entry.user_id]
                pipe.eval(_REFRESH_MANY, 3, *_keys(topic), *args)
                calls.append(topic)
        results = await pipe.execute()
    sizes: dict[str, int] = {}
    joined: dict[str, list[dict[str, Any]]] = {}
    for topic, (size, *rejoined) in zip(calls, results, strict=True):
        sizes[topic] = int(size)  # the topic's last batch saw every earlier one
        joined.setdefault(topic, []).extend(_user_from(str(member).split("|", 1)[1]) for member in rejoined)
    return [Change(topic, sizes[topic], joined=joined[topic]) for topic in by_topic]


async def sweep_counted() -> list[Change]:
    """Remove expired entries of the topics that are due, in two round trips whatever their number."""
    client = get_redis()
    now = time.time()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zrangebyscore(deadlines_key(), "-inf", now, start=0, num=SWEEP_BATCH)
        pipe.spop(legacy_topics_key(), LEGACY_BATCH)
        due, popped = await pipe.execute()
    legacy = list(popped) if isinstance(popped, list | set) else []
    topics = sorted({str(name) for name in (*due, *legacy)})
    if not topics:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for topic in topics:
            pipe.eval(_SWEEP, 3, *_keys(topic), now, topic)
        results = await pipe.execute()
    return [
        Change(topic, int(size), left=[_user_from(str(item)) for item in left])
        for topic, (size, *left) in zip(topics, results, strict=True)
    ]


async def sweep() -> dict[str, list[dict[str, Any]]]:
    """Remove expired entries of the topics that are due; the users that left, by topic."""
    return {change.topic: change.left for change in await sweep_counted() if change.left}


async def users(topic: str) -> list[dict[str, Any]]:
    """The users with at least one live connection subscribed to ``topic``."""
    members = await get_redis().zrangebyscore(_keys(topic)[0], time.time(), "+inf")
    found: dict[int, dict[str, Any]] = {}
    for member in members:
        _, user_id, username = str(member).split("|", 2)
        found[int(user_id)] = {"id": int(user_id), "username": username}
    return sorted(found.values(), key=_order)


def _order(user: dict[str, Any]) -> tuple[str, int]:
    return (user["username"], user["id"])


def _user_from(item: str) -> dict[str, Any]:
    user_id, username = item.split("|", 1)
    return {"id": int(user_id), "username": username}
