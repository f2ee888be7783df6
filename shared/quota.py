"""The per-user publish quota: messages and bytes per user per window, across every replica.

One Redis hash per user that published in the current window
(``quota:publish:<user id>``, fields ``n`` and ``b``), created with a TTL of
``PUBLISH_QUOTA_WINDOW_SECONDS`` when the window opens: keys are bounded by
the users active in one window and vanish on their own. Checking and counting
is one Lua script, so one round trip per publish and no race between
replicas; a refused publish is not counted.

A Redis failure lets the publish through (logged): the quota bounds abuse, it
must not turn a Redis outage into a publish outage the rest of the code
already handles (see ``shared.messaging``).
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from redis.exceptions import RedisError

from shared.redis_client import get_redis

logger = logging.getLogger("shared.quota")

KEY_PREFIX = "quota:publish:"

# KEYS[1] the user's hash; ARGV: size, max messages, max bytes, window ms.
# Returns 0 when counted, else the window's remaining milliseconds.
_CHARGE = """
local counts = redis.call('HMGET', KEYS[1], 'n', 'b')
local n = tonumber(counts[1]) or 0
local b = tonumber(counts[2]) or 0
local size = tonumber(ARGV[1])
if n + 1 > tonumber(ARGV[2]) or b + size > tonumber(ARGV[3]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 1 then ttl = 1 end
  return ttl
end
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HINCRBY', KEYS[1], 'b', size)
if n == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 0
"""


class QuotaExceeded(Exception):
    """A publish over the user's quota; ``retry_after`` is when the window ends, in seconds."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def quota_key(user_id: int) -> str:
    return f"{KEY_PREFIX}{user_id}"


def text_bytes(text: str) -> int:
    """What a message costs against the byte quota: its text in UTF-8."""
    return len(text.encode("utf-8"))


async def charge_publish(user_id: int, text: str) -> None:
    """Count one publish of ``text`` by ``user_id``; :class:`QuotaExceeded` when over the quota."""
    max_messages: int = settings.PUBLISH_QUOTA_MESSAGES
    max_bytes: int = settings.PUBLISH_QUOTA_BYTES
    window: int = settings.PUBLISH_QUOTA_WINDOW_SECONDS
    client = get_redis()
    try:
        remaining_ms = int(
            await client.eval(_CHARGE, 1, quota_key(user_id), text_bytes(text), max_messages, max_bytes, window * 1000)
        )
    except (RedisError, OSError) as exc:
        logger.warning("publish quota not checked (Redis unavailable): %s", exc)
        return
    if remaining_ms:
        retry_after = max(1, math.ceil(remaining_ms / 1000))
        raise QuotaExceeded(
            f"publish quota exceeded: at most {max_messages} messages and {max_bytes} bytes per {window} s; "
            f"retry in {retry_after} s",
            retry_after,
        )
