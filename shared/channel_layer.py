"""The channels-redis layer, configured for bursts and long idle connections.

Two redis-py 8 defaults break a stock channels-redis setup:

* ``ConnectionPool`` allows 100 connections and raises ``MaxConnectionsError``
  ("Too many connections") beyond that, so a burst of concurrent connects
  (each doing ``group_add``) fails. :class:`RedisChannelLayer` uses a
  ``BlockingConnectionPool`` instead: a bounded number of connections, and a
  caller that finds them all busy waits (up to ``pool_timeout``) rather than
  failing.
* Every connection gets a 5 s socket read timeout, while channels-redis blocks
  up to ``brpop_timeout`` (5 s) in BZPOPMIN waiting for messages: the two race,
  and a consumer idle for about 5 s can die with 1011 on a read timeout.
  :func:`channel_layers_config` keeps the socket timeout well above the
  blocking timeout, and turns on TCP keepalive and health checks so a dead
  connection is still noticed; commands reconnect and retry on connection
  errors (:func:`connection_retry`), so a Redis restart is survived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels_redis.core import RedisChannelLayer as _StockRedisChannelLayer
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

BACKEND = "shared.channel_layer.RedisChannelLayer"


class RedisChannelLayer(_StockRedisChannelLayer):  # type: ignore[misc]
    """channels-redis with a blocking (bounded, waiting) connection pool per host."""

    def create_pool(self, index: int) -> BlockingConnectionPool:
        host = dict(self.hosts[index])
        address = host.pop("address")
        pool: BlockingConnectionPool = BlockingConnectionPool.from_url(address, **host)
        return pool


def connection_retry() -> Retry:
    """Reconnect and retry a command on a connection error, a few times.

    redis-py retries nothing by default. After a Redis restart every pooled
    connection is dead, and without this the first command on each one
    fails (a burst of connects then fails with 4013) instead of reconnecting.
    """
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), 3)


@dataclass(frozen=True, slots=True)
class RedisPoolOptions:
    """Per-process pool settings; see the README's configuration table."""

    max_connections: int = 64
    pool_timeout: float = 10.0
    socket_timeout: float = 15.0
    connect_timeout: float = 2.0
    health_check_interval: int = 15


def channel_layers_config(
    redis_url: str,
    *,
    prefix: str,
    capacity: int,
    expiry: int,
    pool: RedisPoolOptions,
) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` setting for one Redis server at ``redis_url``."""
    blocking_timeout = _StockRedisChannelLayer.brpop_timeout
    if pool.socket_timeout <= blocking_timeout:
        raise ValueError(
            f"Redis socket timeout {pool.socket_timeout}s must exceed the channel layer's "
            f"blocking read timeout ({blocking_timeout}s), or idle consumers die on read timeouts"
        )
    host = {
        "address": redis_url,
        "max_connections": pool.max_connections,
        "timeout": pool.pool_timeout,
        "socket_timeout": pool.socket_timeout,
        "socket_connect_timeout": pool.connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": pool.health_check_interval,
        "retry": connection_retry(),
    }
    return {
        "default": {
            "BACKEND": BACKEND,
            "CONFIG": {
                "hosts": [host],
                "prefix": prefix,
                "capacity": capacity,
                "expiry": expiry,
            },
        }
    }
