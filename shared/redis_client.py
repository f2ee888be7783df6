"""A redis-py asyncio client per event loop, for data kept outside the channel layer.

Connection slots, features' data, the layer monitor's key and the readiness
``PING`` all use this one Redis: the Sentinel master when
``REDIS_SENTINELS`` is set, else ``REDIS_URL``. Channel-layer shards
(``CHANNEL_LAYER_SHARDS``) never hold this data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Mapping
from typing import Any

import redis.asyncio as redis
from django.conf import settings

from shared.channel_layer import create_blocking_pool, data_host, sentinel_host
from shared.redis_topology import RedisTopology

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.Redis] = weakref.WeakKeyDictionary()


def data_topology() -> RedisTopology:
    """``settings.REDIS_TOPOLOGY`` with the current ``settings.REDIS_URL`` (which tests may point elsewhere)."""
    topology: RedisTopology | None = getattr(settings, "REDIS_TOPOLOGY", None)
    if topology is None:
        return RedisTopology(url=settings.REDIS_URL)
    return dataclasses.replace(topology, url=settings.REDIS_URL)


def get_redis() -> redis.Redis:
    """The client for the data Redis, bound to the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # Bounded and blocking like the channel layer's pool: a burst waits instead of failing.
        host = data_host(data_topology(), settings.REDIS_POOL) | {"decode_responses": True}
        # from_pool: closing the client closes its pool (and a Sentinel pool's sentinel connections).
        client = redis.Redis.from_pool(create_blocking_pool(host))
        _clients[loop] = client
    return client


# What names a Redis server in a host entry (``data_host``, ``layer_hosts``); the rest is pool tuning.
_SERVER_KEYS = ("address", "master_name", "sentinels", "db", "username", "password", "ssl")


def is_data_redis(host: Mapping[str, Any]) -> bool:
    """Whether a channel-layer host entry is the data Redis (:func:`get_redis`): one server, one pipeline for both."""
    data = data_host(data_topology(), settings.REDIS_POOL)
    return all(host.get(key) == data.get(key) for key in _SERVER_KEYS)


def new_probe_client(timeout: float) -> redis.Redis:
    """A fresh client to the data Redis with short timeouts, for readiness probes; close it after use."""
    topology = data_topology()
    if topology.sentinel is None:
        return redis.Redis.from_url(topology.url, socket_timeout=timeout, socket_connect_timeout=timeout)
    host = sentinel_host(topology, settings.REDIS_POOL)
    short = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    host.update(short, max_connections=2, sentinel_kwargs=host["sentinel_kwargs"] | short)
    return redis.Redis.from_pool(create_blocking_pool(host))
