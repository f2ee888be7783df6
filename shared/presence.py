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

Earlier versions kept an ever-growing plain set of topic names
(``<prefix>:presence:topics``); sweeps drain it ``LEGACY_BATCH`` topics at a
time, so entries written by an older replica still expire.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from shared.redis_client import get_redis

# Topics swept per round (the earliest deadlines first); the rest wait for the next round.
SWEEP_BATCH = 1000
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

_JOIN = (
    _TRACK
    + """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local n = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
track(ARGV[4])
return n
"""
)

# Refresh a live entry; re-join one that is gone (swept, or Redis lost its data).
_REFRESH = (
    _TRACK
    + """
local n = 0
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  n = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
track(ARGV[4])
return n
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
return last
"""
)

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


async def join(entry: PresenceEntry) -> bool:
    """Add a connection; ``True`` when it is the user's first in the topic."""
    count = await get_redis().eval(_JOIN, 3, *_keys(entry.topic), entry.member, _expiry(), entry.user_id, entry.topic)
    return int(count) == 1


async def refresh(entry: PresenceEntry) -> bool:
    """Extend a connection's entry; ``True`` when it had to be re-joined as the user's first."""
    count = await get_redis().eval(
        _REFRESH, 3, *_keys(entry.topic), entry.member, _expiry(), entry.user_id, entry.topic
    )
    return int(count) == 1


async def leave(entry: PresenceEntry) -> bool:
    """Remove a connection; ``True`` when it was the user's last in the topic."""
    left = await get_redis().eval(_LEAVE, 3, *_keys(entry.topic), entry.member, entry.user_id, entry.topic)
    return int(left) == 1


async def sweep() -> dict[str, list[dict[str, Any]]]:
    """Remove expired entries of the topics that are due; the users that left, by topic."""
    client = get_redis()
    now = time.time()
    due = await client.zrangebyscore(deadlines_key(), "-inf", now, start=0, num=SWEEP_BATCH)
    popped = await client.spop(legacy_topics_key(), LEGACY_BATCH)
    legacy = list(popped) if isinstance(popped, list | set) else []
    result: dict[str, list[dict[str, Any]]] = {}
    for topic in sorted({str(name) for name in (*due, *legacy)}):
        left = await client.eval(_SWEEP, 3, *_keys(topic), now, topic)
        if left:
            result[topic] = [_user_from(str(item)) for item in left]
    return result


async def users(topic: str) -> list[dict[str, Any]]:
    """The users with at least one live connection subscribed to ``topic``."""
    members = await get_redis().zrangebyscore(_keys(topic)[0], time.time(), "+inf")
    found: dict[int, dict[str, Any]] = {}
    for member in members:
        _, user_id, username = str(member).split("|", 2)
        found[int(user_id)] = {"id": int(user_id), "username": username}
    return sorted(found.values(), key=lambda user: (user["username"], user["id"]))


def _user_from(item: str) -> dict[str, Any]:
    user_id, username = item.split("|", 1)
    return {"id": int(user_id), "username": username}
