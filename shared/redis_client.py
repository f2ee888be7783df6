"""A redis-py asyncio client per event loop, for data kept outside the channel layer."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as redis
from django.conf import settings

from shared.channel_layer import connection_retry

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.Redis] = weakref.WeakKeyDictionary()


def get_redis() -> redis.Redis:
    """The client for ``REDIS_URL`` bound to the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        options = settings.REDIS_POOL
        # Bounded and blocking like the channel layer's pool: a burst waits instead of failing.
        pool = redis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=options.max_connections,
            timeout=options.pool_timeout,
            decode_responses=True,
            socket_timeout=options.socket_timeout,
            socket_connect_timeout=options.connect_timeout,
            socket_keepalive=True,
            health_check_interval=options.health_check_interval,
            retry=connection_retry(),
        )
        client = redis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client
