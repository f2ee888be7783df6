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

Past one node (:mod:`shared.redis_topology`): with Sentinel, every pool is a
:class:`BlockingSentinelConnectionPool`, the same bounded blocking pool whose
connections ask the sentinels for the current master (and ask again after a
failover); with ``CHANNEL_LAYER_SHARDS`` the layer gets one host (and one
bounded pool per event loop) per shard.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from channels_redis.core import RedisChannelLayer as _StockRedisChannelLayer
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff

from shared.redis_topology import RedisTopology

BACKEND = "shared.channel_layer.RedisChannelLayer"
# Added by ``group_send`` to every event: the group it was sent to, so a ws process that
# receives every group's events on its one channel (``ws_service.node``) can fan them out.
GROUP_KEY = "__group__"


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A bounded, blocking pool of connections to the master a Sentinel reports.

    ``SentinelConnectionPool`` finds (and after a failover, re-finds) the
    master; ``BlockingConnectionPool`` bounds the connections and makes a
    caller wait for a free one. Closing the pool also closes the connections
    to the sentinels.
    """

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


def create_blocking_pool(host: Mapping[str, Any]) -> ConnectionPool:
    """A bounded blocking pool for one channel-layer host entry (see :func:`layer_hosts`)."""
    options = dict(host)
    if "master_name" in options:
        master_name = options.pop("master_name")
        sentinels, sentinel_kwargs = options.pop("sentinels"), options.pop("sentinel_kwargs")
        sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
        return BlockingSentinelConnectionPool(master_name, sentinel, **options)  # type: ignore[no-untyped-call]
    pool: ConnectionPool = BlockingConnectionPool.from_url(options.pop("address"), **options)
    return pool


class RedisChannelLayer(_StockRedisChannelLayer):  # type: ignore[misc]
    """channels-redis with a blocking (bounded, waiting) connection pool per host.

    Plus ``group_add_many``/``group_discard_many``: one pipelined round trip
    per shard for a connection's groups, where ``group_add`` takes two per
    group (a connect joins three groups: six round trips become one).
    """

    def create_pool(self, index: int) -> ConnectionPool:
        return create_blocking_pool(self.hosts[index])

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """channels-redis ``group_send``, with the group's name in the event (:data:`GROUP_KEY`)."""
        await super().group_send(group, {**message, GROUP_KEY: group})

    def groups_by_shard(self, groups: Iterable[str], channel: str) -> dict[int, list[bytes]]:
        """The Redis keys of ``groups``, by shard index (names checked as channels-redis does)."""
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        by_shard: dict[int, list[bytes]] = {}
        for group in groups:
            assert self.require_valid_group_name(group), "Group name not valid"
            by_shard.setdefault(self.consistent_hash(group), []).append(self._group_key(group))
        return by_shard

    def queue_group_add(self, pipe: Pipeline, key: bytes, channel: str, now: float) -> None:
        """Queue ``group_add``'s two commands for one group key (from :meth:`groups_by_shard`) on ``pipe``."""
        pipe.zadd(key, {channel: now})
        pipe.expire(key, self.group_expiry)

    async def group_add_many(self, groups: Iterable[str], channel: str) -> None:
        """``group_add`` of ``channel`` to every group, the same keys and expiry as channels-redis."""
        now = time.time()
        for index, keys in self.groups_by_shard(groups, channel).items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for key in keys:
                    self.queue_group_add(pipe, key, channel, now)
                await pipe.execute()

    async def group_discard_many(self, groups: Iterable[str], channel: str) -> None:
        """``group_discard`` of ``channel`` from every group."""
        for index, keys in self.groups_by_shard(groups, channel).items():
            async with self.connection(index).pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zrem(key, channel)
                await pipe.execute()


def connection_retry() -> Retry:
    """Reconnect and retry a command on a connection error, a few times.

    redis-py retries nothing by default. After a Redis restart every pooled
    connection is dead, and without this the first command on each one
    fails (a burst of connects then fails with 4013) instead of reconnecting.
    """
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), 3)


@dataclass(frozen=True, slots=True)
class RedisPoolOptions:
    """Per-process pool settings; see the table in docs/configuration.md."""

    max_connections: int = 64
    pool_timeout: float = 10.0
    socket_timeout: float = 15.0
    connect_timeout: float = 2.0
    health_check_interval: int = 15


def pool_options(pool: RedisPoolOptions) -> dict[str, Any]:
    """redis-py pool and connection keyword arguments for ``pool``."""
    blocking_timeout = _StockRedisChannelLayer.brpop_timeout
    if pool.socket_timeout <= blocking_timeout:
        raise ValueError(
            f"Redis socket timeout {pool.socket_timeout}s must exceed the channel layer's "
            f"blocking read timeout ({blocking_timeout}s), or idle consumers die on read timeouts"
        )
    return {
        "max_connections": pool.max_connections,
        "timeout": pool.pool_timeout,
        "socket_timeout": pool.socket_timeout,
        "socket_connect_timeout": pool.connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": pool.health_check_interval,
        "retry": connection_retry(),
    }


def sentinel_host(topology: RedisTopology, pool: RedisPoolOptions) -> dict[str, Any]:
    """The host entry of a Sentinel-managed master: credentials and db from ``REDIS_URL``."""
    sentinel = topology.sentinel
    if sentinel is None:
        raise ValueError("not a Sentinel topology")
    master = dict(parse_url(topology.url))
    master.pop("host", None)
    master.pop("port", None)
    if master.pop("connection_class", None) is SSLConnection:
        master["ssl"] = True  # SentinelConnectionPool then uses its own TLS connection class
    # Sentinels answer small queries: short timeouts, so a dead one is skipped quickly.
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": pool.connect_timeout,
        "socket_connect_timeout": pool.connect_timeout,
        "socket_keepalive": True,
    }
    if sentinel.password:
        sentinel_kwargs["password"] = sentinel.password
    return {
        "master_name": sentinel.master_name,
        "sentinels": list(sentinel.sentinels),
        "sentinel_kwargs": sentinel_kwargs,
        **master,
        **pool_options(pool),
    }


def data_host(topology: RedisTopology, pool: RedisPoolOptions) -> dict[str, Any]:
    """The one Redis outside the channel layer (slots, features' data): the Sentinel master or ``REDIS_URL``."""
    if topology.sentinel is not None:
        return sentinel_host(topology, pool)
    return {"address": topology.url, **pool_options(pool)}


def layer_hosts(topology: RedisTopology, pool: RedisPoolOptions) -> list[dict[str, Any]]:
    """channels-redis ``hosts``: the Sentinel master, or one entry per shard (or ``REDIS_URL``)."""
    if topology.sentinel is not None:
        return [sentinel_host(topology, pool)]
    return [{"address": url, **pool_options(pool)} for url in topology.layer_urls]


def channel_layers_config(
    redis: str | RedisTopology,
    *,
    prefix: str,
    capacity: int,
    expiry: int,
    pool: RedisPoolOptions,
) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` setting for one Redis URL, or for a :class:`RedisTopology`."""
    topology = RedisTopology(url=redis) if isinstance(redis, str) else redis
    return {
        "default": {
            "BACKEND": BACKEND,
            "CONFIG": {
                "hosts": layer_hosts(topology, pool),
                "prefix": prefix,
                "capacity": capacity,
                "expiry": expiry,
            },
        }
    }
