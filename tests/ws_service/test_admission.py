"""A connect's Redis work is one pipelined round trip (ws_service/admission.py), shared by concurrent connects.

Round trips are counted where they happen: every write of a redis-py
connection (``send_packed_command``: one per command, one per pipeline) on
the real Redis of the test session, while connects run through the full ws
stack (WebsocketCommunicator). Not connect work, so left out: the node
reading its channel (``BZPOPMIN``, after channels-redis's in-flight clean-up
script), the layer monitor's sentinel key, connection health checks
(``PING``) and a new pooled connection's set-up (``HELLO``...).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from pytest_django.fixtures import Settings as SettingsWrapper
from redis.asyncio.connection import AbstractConnection

from shared.channel_layer import channel_layers_config
from shared.groups import BROADCAST_GROUP, user_group
from shared.redis_client import get_redis
from shared.topics import session_group
from tests.support.communicators import welcomed, ws_communicator
from tests.support.servers import RedisServer, free_port
from tests.support.users import make_user, session_key_for
from ws_service.admission import get_admission
from ws_service.connection_slots import open_connections
from ws_service.node import get_node
from ws_service.protocol import CLOSE_TOO_MANY_CONNECTIONS, CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)

# The node reading its channel (channels-redis: a script restoring its in-flight backup, then BZPOPMIN),
# and the layer monitor's sentinel key.
NOT_CONNECT_WORK = (b"\r\nBZPOPMIN\r\n", b"!$inflight\r\n", b":alive:")


class RoundTrips:
    """The writes to Redis made while :attr:`counting` is on."""

    def __init__(self) -> None:
        self.counting = False
        self.sent: list[bytes] = []

    def connect_work(self) -> list[bytes]:
        return [
            sent
            for sent in self.sent
            if not any(marker in sent for marker in NOT_CONNECT_WORK) and sent != b"*1\r\n$4\r\nPING\r\n"
        ]

    def start(self) -> None:
        self.sent.clear()
        self.counting = True

    def stop(self) -> list[bytes]:
        self.counting = False
        return self.connect_work()


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    trips = RoundTrips()
    original = AbstractConnection.send_packed_command
    sending: set[int] = set()  # connections setting up or inside a write: their nested writes are set-up

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        if id(self) in sending:
            await original(self, command, check_health)
            return
        if trips.counting:
            parts = [command] if isinstance(command, (bytes, str)) else list(command)
            trips.sent.append(b"".join(part.encode() if isinstance(part, str) else bytes(part) for part in parts))
            command = parts
        sending.add(id(self))
        try:
            await original(self, command, check_health)
        finally:
            sending.discard(id(self))

    set_up = AbstractConnection.on_connect_check_health

    async def setting_up(self: AbstractConnection, check_health: bool = True) -> None:
        sending.add(id(self))
        try:
            await set_up(self, check_health)
        finally:
            sending.discard(id(self))

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    monkeypatch.setattr(AbstractConnection, "on_connect_check_health", setting_up)
    return trips


@pytest.fixture(autouse=True)
async def redis_closed_after() -> AsyncIterator[None]:
    """The loop's Redis client (``get_redis()``, shared with the app) is closed with the loop."""
    yield
    await get_redis().aclose()


async def _session(username: str) -> tuple[int, str]:
    user = await sync_to_async(make_user)(username)
    return user.pk, await sync_to_async(session_key_for)(user)


def _another_session(user_id: int) -> str:
    return session_key_for(User.objects.get(pk=user_id))


async def _close_code(key: str) -> int:
    """The close code of a handshake that is accepted and closed at once."""
    communicator = ws_communicator(session_key=key)
    assert await communicator.connect() == (True, None)
    output = await communicator.receive_output(3)
    assert output["type"] == "websocket.close", output
    await communicator.wait(3)
    code: int = output["code"]
    return code


def _commands(sent: bytes) -> list[str]:
    """The command names in one write, in order."""
    names = ("EVAL", "EVALSHA", "ZADD", "EXPIRE", "EXISTS", "ZREM")
    return [name for part in sent.split(b"\r\n") if (name := part.decode("latin-1")) in names]


async def _holds(channel: str | None, group: str) -> bool:
    """Whether ``channel`` (a node's) is a member of ``group`` in Redis (other tests' nodes may be too)."""
    layer: Any = get_channel_layer()
    connection = layer.connection(layer.consistent_hash(group))
    return channel is not None and await connection.zscore(layer._group_key(group), channel) is not None


async def _members(group: str) -> int:
    layer: Any = get_channel_layer()
    return int(await layer.connection(layer.consistent_hash(group)).zcard(layer._group_key(group)))


async def test_a_first_connect_makes_one_round_trip_slot_then_joins_then_marks(round_trips: RoundTrips) -> None:
    _, key = await _session("alice")
    round_trips.start()
    alice = await welcomed(key)
    trips = round_trips.stop()
    assert len(trips) == 1, [_commands(sent) for sent in trips]
    # In this order on one connection: the slot script, the three groups' joins, then both marks.
    assert _commands(trips[0]) == ["EVAL"] + ["ZADD", "EXPIRE"] * 3 + ["EXISTS"]
    await alice.disconnect()


async def test_a_repeat_connect_of_a_cached_session_makes_one_round_trip_without_joins(
    round_trips: RoundTrips,
) -> None:
    _, key = await _session("alice")
    first = await welcomed(key)
    round_trips.start()
    second = await welcomed(key)  # served from the cache; the process already holds every group
    trips = round_trips.stop()
    assert [_commands(sent) for sent in trips] == [["EVAL", "EXISTS"]]
    await first.disconnect()
    await second.disconnect()


async def test_a_connect_burst_makes_one_round_trip_per_batch(
    round_trips: RoundTrips, settings: SettingsWrapper
) -> None:
    settings.WS_MAX_CONNECTIONS_PER_USER = 100
    _, key = await _session("alice")
    others = [await _session(f"user{n}") for n in range(6)]
    keeper = await welcomed(key)
    admission = get_admission()
    before = admission.batches
    round_trips.start()
    # 30 repeats of a cached session arrive together, plus first connects of new users (read from the database).
    burst = await asyncio.gather(*(welcomed(key) for _ in range(30)), *(welcomed(other) for _, other in others))
    trips = round_trips.stop()
    batches = admission.batches - before
    assert len(trips) == batches, [_commands(sent) for sent in trips]  # one round trip per batch
    assert batches <= 1 + len(others)  # the cached repeats shared one or two round trips between them
    assert sum(_commands(sent).count("EVAL") for sent in trips) == 36  # every connect's slot script went out
    for communicator in (keeper, *burst):
        await communicator.disconnect()


async def test_a_refused_slot_leaves_no_group_membership_and_its_refusal_is_4429(
    round_trips: RoundTrips, settings: SettingsWrapper
) -> None:
    settings.WS_MAX_CONNECTIONS_PER_USER = 1
    user_id, key = await _session("alice")
    open_one = await welcomed(key)
    other_key = await sync_to_async(_another_session)(user_id)
    refused_group = session_group(other_key)
    round_trips.start()
    assert await _close_code(other_key) == CLOSE_TOO_MANY_CONNECTIONS
    trips = round_trips.stop()
    # The admission (its new session group joined), then leaving the group it joined alone: refused connects only.
    assert [_commands(sent) for sent in trips] == [["EVAL", "ZADD", "EXPIRE", "EXISTS"], ["ZREM"]]
    assert await _members(refused_group) == 0
    node = get_node()
    assert refused_group not in node.local
    assert await _members(user_group(user_id)) == 1  # the open connection's groups stay
    assert len(node.local[user_group(user_id)]) == 1
    assert await open_connections(user_id) == 1
    await open_one.disconnect()


async def test_concurrent_first_connects_over_the_limit_keep_the_admitted_ones_groups(
    settings: SettingsWrapper,
) -> None:
    """Two first connects of one new session with room for one: one welcomed, one 4429, the group still held."""
    settings.WS_MAX_CONNECTIONS_PER_USER = 1
    user_id, key = await _session("alice")
    communicators = [ws_communicator(session_key=key) for _ in range(2)]
    await asyncio.gather(*(communicator.connect() for communicator in communicators))
    firsts = [await communicator.receive_output(3) for communicator in communicators]
    kinds = sorted("welcome" if first["type"] == "websocket.send" else f"close {first['code']}" for first in firsts)
    assert kinds == [f"close {CLOSE_TOO_MANY_CONNECTIONS}", "welcome"]
    node = get_node()
    for group in (session_group(key), user_group(user_id), BROADCAST_GROUP):
        assert len(node.local[group]) == 1
        assert await _holds(node.channel, group)
    assert await open_connections(user_id) == 1
    for communicator in communicators:
        await communicator.disconnect()


# -- the channel layer on another Redis than the data (as with CHANNEL_LAYER_SHARDS) ----------


@pytest.fixture(scope="module")
def layer_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def layer_elsewhere(settings: SettingsWrapper, layer_server: RedisServer) -> None:
    """The channel layer on its own server; slots (``REDIS_URL``) stay on the test session's Redis."""
    settings.CHANNEL_LAYERS = channel_layers_config(
        layer_server.url,
        prefix=django_settings.CHANNEL_LAYER_PREFIX,
        capacity=django_settings.CHANNEL_LAYER_CAPACITY,
        expiry=django_settings.CHANNEL_LAYER_EXPIRY,
        pool=django_settings.REDIS_POOL,
    )
    assert layer_server.url != django_settings.REDIS_URL


async def test_a_layer_on_another_server_gets_its_own_pipeline_in_the_same_round_trip(
    round_trips: RoundTrips, layer_elsewhere: None
) -> None:
    user_id, key = await _session("alice")
    before = get_admission().batches
    round_trips.start()
    alice = await welcomed(key)
    trips = round_trips.stop()
    assert get_admission().batches - before == 1
    # Sent concurrently: the slot script on the data Redis, the joins then the marks on the layer's server.
    assert sorted(_commands(sent) for sent in trips) == [["EVAL"], ["ZADD", "EXPIRE"] * 3 + ["EXISTS"]]
    assert await open_connections(user_id) == 1
    assert await _members(user_group(user_id)) == 1
    await alice.disconnect()


async def test_a_revocation_mark_on_the_layers_server_refuses_a_cached_handshake(layer_elsewhere: None) -> None:
    _, key = await _session("alice")
    keeper = await welcomed(key)
    node = get_node()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(node, "_observers", {})  # the node never evicts the cached entry: only the mark can refuse
        # Its signal marks the session group on the layer's server (then sends the event).
        await sync_to_async(Session.objects.filter(session_key=key).delete)()
        assert await _close_code(key) == CLOSE_UNAUTHENTICATED
    await keeper.disconnect()


async def test_with_the_data_redis_down_a_connect_is_let_through_uncounted(
    layer_elsewhere: None, settings: SettingsWrapper
) -> None:
    """Availability wins over the limit: the joins and marks (on the layer's server) still decide."""
    settings.WS_MAX_CONNECTIONS_PER_USER = 1
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    user_id, key = await _session("alice")
    one, two = await welcomed(key), await welcomed(key)  # over the limit, yet both let through
    assert len(get_node().local[user_group(user_id)]) == 2
    await one.disconnect()
    await two.disconnect()
