"""Who is subscribed to a topic, across every ws replica, kept in Redis.

Each subscribed connection is a member ``<connection_id>|<user_id>|<username>``
of a sorted set per topic, scored by when it expires. Its process refreshes it
every ``PRESENCE_TTL_SECONDS / 3``. A per-topic hash counts each user's live
connections, so a diff is emitted only for a user's first join and last leave.
Every step is a Lua script, hence atomic: when several replicas sweep the
entries of a crashed one, each expired entry is removed (and counted down)
exactly once. A crashed replica's users therefore disappear within the TTL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from shared.redis_client import get_redis

_JOIN = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
return redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
"""

# Refresh a live entry; re-join one that is gone (swept, or Redis lost its data).
_REFRESH = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
return redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
"""

_LEAVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local n = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
  if n <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    return 1
  end
end
return 0
"""

_SWEEP = """
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
return left
"""


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


def _keys(topic: str) -> list[str]:
    prefix = f"{settings.CHANNEL_LAYER_PREFIX}:presence"
    return [f"{prefix}:conns:{topic}", f"{prefix}:users:{topic}", f"{prefix}:topics"]


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
    left = await get_redis().eval(_LEAVE, 2, *_keys(entry.topic)[:2], entry.member, entry.user_id)
    return int(left) == 1


async def sweep() -> dict[str, list[dict[str, Any]]]:
    """Remove expired entries everywhere; the users that left, by topic."""
    client = get_redis()
    topics = await client.smembers(_keys("")[2])
    now = time.time()
    result: dict[str, list[dict[str, Any]]] = {}
    for topic in sorted(str(name) for name in topics):
        left = await client.eval(_SWEEP, 2, *_keys(topic)[:2], now)
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
