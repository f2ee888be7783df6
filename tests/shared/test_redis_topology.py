"""Redis past one node: Sentinel and channel-layer shards, parsed from the environment and live."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from shared.channel_layer import (
    BlockingSentinelConnectionPool,
    RedisChannelLayer,
    RedisPoolOptions,
    channel_layers_config,
    create_blocking_pool,
)
from shared.redis_client import get_redis, new_probe_client
from shared.redis_topology import RedisTopology, SentinelConfig, parse_host_port, redis_topology
from tests.support.live import fetch_ticket, login, open_ws, recv_json, recv_type, send_json
from tests.support.servers import HOST, DaphneServer, RedisServer, free_port, wait_for_port
from tests.support.users import PASSWORD, make_user

MASTER = "mymaster"

# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def test_one_url_is_the_default() -> None:
    topology = redis_topology("redis://127.0.0.1:6379/0")
    assert topology == RedisTopology(url="redis://127.0.0.1:6379/0")
    assert topology.layer_urls == ("redis://127.0.0.1:6379/0",)


def test_shards() -> None:
    topology = redis_topology("redis://data:6379/0", shards=" redis://a:6379/0 , rediss://:pw@b:6380/1")
    assert topology.shards == ("redis://a:6379/0", "rediss://:pw@b:6380/1")
    assert topology.sentinel is None
    hosts = channel_layers_config(topology, prefix="p", capacity=1, expiry=1, pool=RedisPoolOptions())["default"][
        "CONFIG"
    ]["hosts"]
    assert [host["address"] for host in hosts] == list(topology.shards)
    assert all(host["max_connections"] == RedisPoolOptions().max_connections for host in hosts)


def test_sentinel() -> None:
    topology = redis_topology(
        "rediss://app:secret@ignored:1/2",
        sentinels="s1:26380, s2 ,[::1]:26381",
        sentinel_master="cache",
        sentinel_password="sentinel-pw",
    )
    assert topology.sentinel == SentinelConfig((("s1", 26380), ("s2", 26379), ("::1", 26381)), "cache", "sentinel-pw")
    [host] = channel_layers_config(topology, prefix="p", capacity=1, expiry=1, pool=RedisPoolOptions())["default"][
        "CONFIG"
    ]["hosts"]
    assert host["master_name"] == "cache"
    assert host["sentinels"] == [("s1", 26380), ("s2", 26379), ("::1", 26381)]
    assert host["sentinel_kwargs"]["password"] == "sentinel-pw"
    # The master's credentials, db and TLS come from REDIS_URL; its host and port do not.
    assert (host["username"], host["password"], host["db"], host["ssl"]) == ("app", "secret", 2, True)
    assert "host" not in host
    assert "port" not in host
    assert "address" not in host
    assert host["socket_timeout"] > 5  # above channels-redis' 5 s blocking read
    assert host["max_connections"] == RedisPoolOptions().max_connections


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "http://h:1/0"}, "REDIS_URL.*scheme"),
        ({"url": "redis://:pw@/0"}, "REDIS_URL.*empty host"),
        ({"url": "redis://h:99999/0"}, "REDIS_URL"),
        ({"url": "redis://h:1/zero"}, "REDIS_URL.*database"),
        ({"sentinels": "s1:26379,,s2"}, "REDIS_SENTINELS.*empty entry"),
        ({"sentinels": ":26379"}, "REDIS_SENTINELS.*empty host"),
        ({"sentinels": "s1:"}, "REDIS_SENTINELS.*empty port"),
        ({"sentinels": "s1:port"}, "REDIS_SENTINELS.*bad port"),
        ({"sentinels": "s1:70000"}, "REDIS_SENTINELS.*bad port"),
        ({"sentinels": "::1:26379"}, "REDIS_SENTINELS.*IPv6"),
        ({"sentinels": "s1,s1:26379"}, "REDIS_SENTINELS.*twice"),
        ({"sentinels": "s1", "sentinel_master": " "}, "REDIS_SENTINEL_MASTER"),
        ({"sentinel_password": "pw"}, "REDIS_SENTINEL_PASSWORD.*REDIS_SENTINELS"),
        ({"shards": "redis://a:1/0,redis://:pw@:2/0"}, "CHANNEL_LAYER_SHARDS.*empty host"),
        ({"shards": "redis://a:1/0,redis://a:1/0"}, "CHANNEL_LAYER_SHARDS.*twice"),
        ({"shards": "a:1"}, "CHANNEL_LAYER_SHARDS"),
        (
            {"sentinels": "s1", "shards": "redis://a:1/0"},
            "CHANNEL_LAYER_SHARDS cannot be combined with REDIS_SENTINELS",
        ),
    ],
)
def test_bad_values_fail_naming_the_variable(kwargs: dict[str, str], message: str) -> None:
    url = kwargs.pop("url", "redis://127.0.0.1:6379/0")
    with pytest.raises(ImproperlyConfigured, match=message):
        redis_topology(url, **kwargs)


@pytest.mark.parametrize(
    ("item", "expected"),
    [("h", ("h", 7)), ("h:1", ("h", 1)), ("[fe80::1]:2", ("fe80::1", 2)), ("[::1]", ("::1", 7))],
)
def test_host_port(item: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(item, "X", 7) == expected


def _settings_hosts(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import json; from django.conf import settings; "
        "hosts = settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']; "
        "print(json.dumps([{k: h[k] for k in ('address', 'master_name', 'sentinels', 'db') if k in h} for h in hosts]))"
    )
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "shared.settings", "DJANGO_DEBUG": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=False, timeout=60
    )


def test_settings_read_the_environment() -> None:
    single = _settings_hosts({"REDIS_URL": "redis://r:6379/4"})
    assert single.returncode == 0, single.stderr
    assert json.loads(single.stdout) == [{"address": "redis://r:6379/4"}]
    shards = _settings_hosts({"CHANNEL_LAYER_SHARDS": "redis://a:6379/0,redis://b:6379/0"})
    assert shards.returncode == 0, shards.stderr
    assert json.loads(shards.stdout) == [{"address": "redis://a:6379/0"}, {"address": "redis://b:6379/0"}]
    sentinel = _settings_hosts(
        {"REDIS_URL": "redis://:pw@x/5", "REDIS_SENTINELS": "s1:5000,s2", "REDIS_SENTINEL_MASTER": "main"}
    )
    assert sentinel.returncode == 0, sentinel.stderr
    assert json.loads(sentinel.stdout) == [{"master_name": "main", "sentinels": [["s1", 5000], ["s2", 26379]], "db": 5}]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_SENTINELS": "s1:abc"}, "REDIS_SENTINELS"),
        ({"CHANNEL_LAYER_SHARDS": "redis://a:1/0,"}, "CHANNEL_LAYER_SHARDS"),
        ({"REDIS_SENTINELS": "s1", "CHANNEL_LAYER_SHARDS": "redis://a:1/0"}, "CHANNEL_LAYER_SHARDS"),
        ({"REDIS_URL": "redis//nope"}, "REDIS_URL"),
    ],
)
def test_settings_refuse_bad_values_at_start_up(env: dict[str, str], variable: str) -> None:
    result = _settings_hosts(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


# ---------------------------------------------------------------------------
# Live: a real master with a real Sentinel, and two real shards
# ---------------------------------------------------------------------------


class SentinelServer:
    """``redis-server sentinel.conf --sentinel`` watching one master."""

    def __init__(self, binary: str, master_port: int) -> None:
        self.binary = binary
        self.master_port = master_port
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ws-tests-sentinel-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.dir / "sentinel.conf"
        config.write_text(
            f"port {self.port}\n"
            f"bind {HOST}\n"
            f"dir {self.dir}\n"
            f"sentinel monitor {MASTER} {HOST} {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 60000\n"
        )
        self.process = subprocess.Popen(
            [self.binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(self.port, timeout=10, process=self.process)
            with redis.Redis(host=HOST, port=self.port, socket_timeout=2, decode_responses=True) as client:
                deadline = time.monotonic() + 10
                while client.sentinel_get_master_addr_by_name(MASTER) != (HOST, self.master_port):
                    assert time.monotonic() < deadline, "the sentinel never reported the master"
                    time.sleep(0.05)
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def master() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def sentinel(master: RedisServer) -> Iterator[SentinelServer]:
    server = SentinelServer(master.binary, master.port)
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def shards() -> Iterator[list[RedisServer]]:
    servers = [RedisServer(), RedisServer()]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.destroy()


def _keys(port: int, db: int, pattern: str) -> list[bytes]:
    with redis.Redis(host=HOST, port=port, db=db, socket_timeout=2) as client:
        keys: list[bytes] = client.keys(pattern)
        return keys


def _layer(topology: RedisTopology, prefix: str, max_connections: int = 64) -> RedisChannelLayer:
    config = channel_layers_config(
        topology, prefix=prefix, capacity=100, expiry=30, pool=RedisPoolOptions(max_connections=max_connections)
    )["default"]["CONFIG"]
    return RedisChannelLayer(**config)


async def test_channel_layer_through_a_real_sentinel(master: RedisServer, sentinel: SentinelServer) -> None:
    # REDIS_URL's host is deliberately unreachable: only its db (3) is used; the master comes from the sentinel.
    topology = redis_topology("redis://unreachable.invalid:1/3", sentinels=f"{HOST}:{sentinel.port}")
    layer = _layer(topology, "sent", max_connections=2)
    pool = layer.create_pool(0)
    assert isinstance(pool, BlockingSentinelConnectionPool)
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert pool.max_connections == 2
    await pool.aclose()

    channels = [await layer.new_channel() for _ in range(20)]
    # 20 concurrent group_adds over a 2-connection pool: callers wait for a connection, none fails.
    await asyncio.gather(*(layer.group_add("room", channel) for channel in channels))
    assert _keys(master.port, 3, "sent*"), "the group is not on the master's db 3"
    await layer.group_send("room", {"type": "hello", "n": 1})
    received = await asyncio.wait_for(asyncio.gather(*(layer.receive(channel) for channel in channels)), 10)
    assert {message["type"] for message in received} == {"hello"}
    await layer.flush()


async def test_data_client_and_probe_through_a_real_sentinel(master: RedisServer, sentinel: SentinelServer) -> None:
    topology = redis_topology("redis://unreachable.invalid:1/4", sentinels=f"{HOST}:{sentinel.port}")
    with override_settings(REDIS_TOPOLOGY=topology, REDIS_URL=topology.url):
        client = get_redis()
        try:
            await client.set("data-probe", "here", ex=30)
            assert await client.get("data-probe") == "here"
        finally:
            await client.aclose()
        probe = new_probe_client(2.0)
        try:
            assert await probe.ping()
        finally:
            await probe.aclose()
    assert _keys(master.port, 4, "data-probe") == [b"data-probe"]


async def test_channel_layer_over_two_real_shards(shards: list[RedisServer], master: RedisServer) -> None:
    topology = redis_topology(master.url, shards=",".join(server.url for server in shards))
    layer = _layer(topology, "shard")
    channel = await layer.new_channel()
    groups = [f"room.g{i}" for i in range(16)]
    for group in groups:
        await layer.group_add(group, channel)
    for i, group in enumerate(groups):
        await layer.group_send(group, {"type": "hello", "n": i})
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in groups]
    assert sorted(message["n"] for message in received) == list(range(len(groups)))
    for server in shards:
        assert _keys(server.port, 0, "shard*"), f"shard {server.url} holds no channel-layer keys"
    assert not _keys(master.port, 0, "shard*"), "REDIS_URL holds channel-layer keys although shards are set"
    await layer.flush()

    # Data outside the channel layer stays on REDIS_URL, never on a shard.
    with override_settings(REDIS_TOPOLOGY=topology, REDIS_URL=topology.url):
        client = get_redis()
        try:
            await client.set("slot-probe", "1", ex=30)
        finally:
            await client.aclose()
    assert _keys(master.port, 0, "slot-probe") == [b"slot-probe"]
    assert not any(_keys(server.port, 0, "slot-probe") for server in shards)


async def test_blocking_pool_for_a_plain_url_is_unchanged(master: RedisServer) -> None:
    pool = create_blocking_pool({"address": master.url, "max_connections": 3, "timeout": 1})
    assert type(pool) is aioredis.BlockingConnectionPool
    assert pool.max_connections == 3
    await pool.aclose()


@pytest.mark.django_db(transaction=True)
async def test_both_services_run_through_a_real_sentinel(
    master: RedisServer, sentinel: SentinelServer, service_env: dict[str, str], tmp_path: Path
) -> None:
    """REDIS_URL points nowhere: readiness, connects and publishing all go through the sentinel."""
    env = service_env | {
        "REDIS_URL": "redis://unreachable.invalid:1/6",
        "REDIS_SENTINELS": f"{HOST}:{sentinel.port}",
        "REDIS_SENTINEL_MASTER": MASTER,
    }
    web = DaphneServer.web(env, tmp_path / "web.log")
    ws_server = DaphneServer.ws(env, tmp_path / "ws.log")
    try:
        web.start()
        ws_server.start()
        async with httpx.AsyncClient(timeout=10) as probe:
            for server in (web, ws_server):
                ready = await probe.get(f"{server.http_url}/readyz")
                assert ready.status_code == 200, (server.name, ready.text)
        await sync_to_async(make_user)("sentinel-user")
        client = await login(web.http_url, "sentinel-user", PASSWORD)
        try:
            ws = await open_ws(ws_server.ws_url, ticket=(await fetch_ticket(client))["ticket"])
            assert (await recv_json(ws))["type"] == "welcome"
            await send_json(ws, {"type": "subscribe", "topic": "room.sentinel"})
            await recv_type(ws, "subscribed")
            await send_json(ws, {"type": "publish", "topic": "room.sentinel", "text": "via sentinel", "ref": "s"})
            message = await recv_type(ws, "message")
            assert message["text"] == "via sentinel"
            assert _keys(master.port, 6, "*"), "nothing reached the master's db 6"
            await ws.close()
        finally:
            await client.aclose()
    finally:
        web.stop()
        ws_server.stop()


@pytest.fixture
def replicated() -> Iterator[tuple[RedisServer, RedisServer, SentinelServer]]:
    """A master, its replica, and a sentinel watching them (for a real failover)."""
    primary, replica = RedisServer(), RedisServer()
    primary.start()
    watcher: SentinelServer | None = None
    try:
        replica.start()
        with redis.Redis(host=HOST, port=replica.port, socket_timeout=2) as client:
            client.replicaof(HOST, primary.port)
        watcher = SentinelServer(primary.binary, primary.port)
        watcher.start()
        yield primary, replica, watcher
    finally:
        if watcher is not None:
            watcher.destroy()
        replica.destroy()
        primary.destroy()


def _wait(condition: Callable[[], bool], what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {within}s waiting for {what}"
        time.sleep(0.1)


def _replicas_known(sentinel_port: int) -> bool:
    with redis.Redis(host=HOST, port=sentinel_port, socket_timeout=2, decode_responses=True) as client:
        replicas = client.sentinel_slaves(MASTER)
        return any("s_down" not in replica["flags"] and replica["master-link-status"] == "ok" for replica in replicas)


def _role(port: int) -> str:
    with redis.Redis(host=HOST, port=port, socket_timeout=2, decode_responses=True) as client:
        role: str = client.info("replication")["role"]
        return role


def _master_port(sentinel_port: int) -> int:
    with redis.Redis(host=HOST, port=sentinel_port, socket_timeout=2, decode_responses=True) as client:
        return int(client.sentinel_get_master_addr_by_name(MASTER)[1])


@pytest.mark.slow
async def test_channel_layer_and_data_client_follow_a_sentinel_failover(
    replicated: tuple[RedisServer, RedisServer, SentinelServer],
) -> None:
    primary, replica, watcher = replicated
    topology = redis_topology("redis://unreachable.invalid:1/0", sentinels=f"{HOST}:{watcher.port}")
    layer = _layer(topology, "failover", max_connections=4)
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    await layer.group_send("room", {"type": "before"})
    assert (await asyncio.wait_for(layer.receive(channel), 5))["type"] == "before"
    with override_settings(REDIS_TOPOLOGY=topology, REDIS_URL=topology.url):
        client = get_redis()
        try:
            await client.set("slot", "before")
            # The sentinel learns about the replica from the master's INFO (it polls every 10 s).
            await asyncio.to_thread(_wait, lambda: _replicas_known(watcher.port), "the replica", 30)
            with redis.Redis(host=HOST, port=watcher.port, socket_timeout=5) as admin:
                admin.sentinel_failover(MASTER)
            await asyncio.to_thread(
                _wait, lambda: _master_port(watcher.port) == replica.port, "the replica's promotion", 30
            )
            # Pooled connections still point at the old master (now a replica): the first
            # write there gets READONLY, reconnects through the sentinel and is retried.
            await asyncio.to_thread(_wait, lambda: _role(primary.port) == "slave", "the old master's demotion", 30)
            await client.set("slot", "after")
            await layer.group_send("room", {"type": "after"})
            assert (await asyncio.wait_for(layer.receive(channel), 10))["type"] == "after"
        finally:
            await client.aclose()
    with redis.Redis(host=HOST, port=replica.port, socket_timeout=2) as promoted:
        assert promoted.get("slot") == b"after"
    await layer.flush()


async def test_the_layer_monitor_notices_a_flushed_shard_and_restores_its_groups(
    shards: list[RedisServer], master: RedisServer
) -> None:
    """Each shard carries the monitor's sentinel: losing any one of them triggers the restore."""
    from channels.layers import channel_layers

    from ws_service.layer_monitor import LayerMonitor
    from ws_service.node import get_node

    topology = redis_topology(master.url, shards=",".join(server.url for server in shards))
    config = channel_layers_config(
        topology, prefix="mon", capacity=100, expiry=30, pool=RedisPoolOptions(max_connections=8)
    )
    with override_settings(CHANNEL_LAYERS=config, CHANNEL_LAYER_PREFIX="mon"):
        channel_layers.backends = {}
        received: list[dict[str, object]] = []
        all_arrived = asyncio.Event()

        class Inbox:
            def deliver_local(self, event: dict[str, object]) -> None:
                received.append(event)
                if len(received) == len(topics):
                    all_arrived.set()

        inbox = Inbox()
        topics = [f"room.mon{i}" for i in range(8)]  # spread over both shards
        node = get_node()
        await node.join(inbox, [f"topic.{topic}" for topic in topics])
        monitor = LayerMonitor()
        await monitor.check()  # plants the sentinel on every shard
        for server in shards:
            assert _keys(server.port, 0, f"{monitor.sentinel}*"), "a shard without the monitor's sentinel"
        with redis.Redis(host=HOST, port=shards[1].port, socket_timeout=2) as client:
            client.flushall()  # the second shard restarts empty
        await monitor.check()  # notices and re-adds the groups
        layer = channel_layers["default"]
        for topic in topics:
            await layer.group_send(f"topic.{topic}", {"type": "topic.notice", "topic": topic})
        await asyncio.wait_for(all_arrived.wait(), 5)
        assert sorted(str(event["topic"]) for event in received) == sorted(topics)
        await node.leave_all(inbox)
        await layer.flush()
    channel_layers.backends = {}
