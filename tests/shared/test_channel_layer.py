"""The channel layer against a real Redis: bursts and long idle receives."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer as StockRedisChannelLayer
from redis.exceptions import MaxConnectionsError

from shared.channel_layer import RedisChannelLayer, RedisPoolOptions, channel_layers_config
from tests.support.servers import RedisServer

BURST = 400


def _our_layer(redis_url: str, max_connections: int = 8) -> RedisChannelLayer:
    config = channel_layers_config(
        redis_url, prefix="t-burst", capacity=100, expiry=60, pool=RedisPoolOptions(max_connections=max_connections)
    )["default"]["CONFIG"]
    return RedisChannelLayer(**config)


async def test_burst_of_group_adds_waits_for_the_pool_instead_of_failing(redis_server: RedisServer) -> None:
    layer = _our_layer(redis_server.url, max_connections=8)
    channels = [await layer.new_channel() for _ in range(BURST)]
    await asyncio.gather(*(layer.group_add("burst", channel) for channel in channels))
    await layer.group_send("burst", {"type": "hello"})
    received = await asyncio.gather(*(asyncio.wait_for(layer.receive(c), 10) for c in channels))
    assert all(message["type"] == "hello" for message in received)
    await layer.flush()


async def test_stock_pool_fails_the_same_burst(redis_server: RedisServer) -> None:
    """The trap the custom pool avoids: redis-py 8 raises beyond 100 connections."""
    layer = StockRedisChannelLayer(hosts=[{"address": redis_server.url}], prefix="t-stock")
    results = await asyncio.gather(
        *(layer.group_add("burst", f"chan{i}") for i in range(BURST)), return_exceptions=True
    )
    assert any(isinstance(result, MaxConnectionsError) for result in results)
    await layer.flush()


@pytest.mark.slow
async def test_receive_survives_idle_periods_longer_than_the_blocking_read(redis_server: RedisServer) -> None:
    layer = _our_layer(redis_server.url)
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(12)  # more than two 5 s BZPOPMIN cycles, more than redis-py's 5 s default read timeout
    assert not receiving.done(), receiving
    await layer.send(channel, {"type": "late"})
    message = await asyncio.wait_for(receiving, 5)
    assert message["type"] == "late"
    await layer.flush()


async def test_group_add_many_and_discard_many_are_group_add_and_discard_in_one_round_trip(
    redis_server: RedisServer,
) -> None:
    layer = _our_layer(redis_server.url)
    channel, other = await layer.new_channel(), await layer.new_channel()
    groups = ["user.1", "broadcast", "session.abc"]
    await layer.group_add_many(groups, channel)
    await layer.group_add("broadcast", other)
    for group in groups:
        await layer.group_send(group, {"type": "hello", "group": group})
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in groups]
    assert sorted(message["group"] for message in received) == sorted(groups)
    connection = layer.connection(0)
    assert 0 < await connection.ttl(layer._group_key("user.1")) <= layer.group_expiry
    await layer.group_discard_many(groups, channel)
    for group in groups:
        assert await connection.zscore(layer._group_key(group), channel) is None
    assert await connection.zscore(layer._group_key("broadcast"), other) is not None  # others stay
    await layer.flush()
