"""A redis-py asyncio client per event loop, for data kept outside the channel layer."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as redis
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.Redis] = weakref.WeakKeyDictionary()


def get_redis() -> redis.Redis:
    """The client for ``REDIS_URL`` bound to the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        pool = settings.REDIS_POOL
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            decode_responses=True,
            socket_timeout=pool.socket_timeout,
            socket_connect_timeout=pool.connect_timeout,
            socket_keepalive=True,
            health_check_interval=pool.health_check_interval,
        )
        _clients[loop] = client
    return client
