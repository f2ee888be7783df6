"""A drain's cleanup is per process: many connections closed with 1012, Redis left clean in a few round trips.

A real ws process holds ``CONNECTIONS`` connections, each a distinct user
subscribed to one topic (so each has its own user and session groups and
slot, and whatever the features keep per user). On SIGTERM every client must
see 1012, the process must finish its drain (not run out of grace) and exit,
and what other replicas read in Redis must be clean right after: no slot, no
group membership of the drained users — while a user also connected to
another replica stays counted. (A feature's own state after a drain is its own
tests' business, e.g. ``test_presence_drain.py``.) The Redis round trips the drain costs are
counted with ``INFO stats`` (``total_reads_processed``, Redis's socket reads:
one per round trip, a few more for a pipeline of many kilobytes): cleaning up
connection by connection costs at least one per connection.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from websockets.asyncio.client import ClientConnection

from shared.groups import user_group
from tests.support.live import open_ws, recv_json, recv_type, send_json, server_close_code
from tests.support.servers import DaphneServer, RedisServer
from tests.support.users import make_users, session_key_for
from ws_service.connection_slots import open_connections
from ws_service.protocol import CLOSE_SERVICE_RESTART

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONNECTIONS = 120
TOPIC = "room.drain-many"
# Per-process cleanup: one pipeline each for the groups, the slots and each feature's drain hook
# (about 25 reads in all, a pipeline of ~100 KB taking several). Per-connection cleanup: over CONNECTIONS.
MAX_ROUND_TRIPS = CONNECTIONS // 3
DRAIN_TIMEOUT_SECONDS = 20


@pytest.fixture
def draining_ws(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    """A ws process of this test's own, to be sent SIGTERM."""
    with DaphneServer.running_ws(
        service_env,
        logs_dir / f"drain-cleanup-{ws_server_kind}.log",
        ws_server_kind,
        WS_DRAIN_TIMEOUT=str(DRAIN_TIMEOUT_SECONDS),
        WS_HANDSHAKES_PER_ADDRESS_PER_SECOND="100000",
        WS_HANDSHAKE_BURST_PER_ADDRESS="100000",
    ) as server:
        yield server


async def _subscribed(url: str, user: User) -> ClientConnection:
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(url, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["type"] == "welcome"
    await send_json(ws, {"type": "subscribe", "topic": TOPIC})
    await recv_type(ws, "subscribed")
    return ws


async def _reads(client: redis.Redis) -> int:
    return int((await client.info("stats"))["total_reads_processed"])


async def _group_members(client: redis.Redis, group: str) -> int:
    return int(await client.zcard(f"{settings.CHANNEL_LAYER_PREFIX}:group:{group}"))


async def test_sigterm_with_many_connections_cleans_up_per_process(
    draining_ws: DaphneServer, ws_server: DaphneServer, redis_server: RedisServer, ws_server_kind: str
) -> None:
    users = await sync_to_async(make_users)(f"drain-{ws_server_kind}-", CONNECTIONS)
    sockets = [await _subscribed(draining_ws.ws_url, user) for user in users]
    staying = users[0]  # also connected to another replica: stays counted
    elsewhere = await _subscribed(ws_server.ws_url, staying)
    client = redis.Redis.from_url(redis_server.url)
    assert all([await _group_members(client, user_group(user.pk)) >= 1 for user in users])

    assert draining_ws.process is not None
    reads_before = await _reads(client)
    draining_ws.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(server_close_code(ws, DRAIN_TIMEOUT_SECONDS) for ws in sockets))
    returncode = await asyncio.to_thread(draining_ws.process.wait, DRAIN_TIMEOUT_SECONDS + 10)
    round_trips = await _reads(client) - reads_before - 1  # this INFO's own read
    draining_ws.process = None

    assert codes == [CLOSE_SERVICE_RESTART] * CONNECTIONS
    assert returncode == 0
    log = draining_ws.log_path.read_text()
    assert f"drained {CONNECTIONS} connections" in log, "the drain ran out of grace"
    # What another replica reads right after: the drained users are gone, the one still connected elsewhere is not.
    assert [await open_connections(user.pk) for user in users] == [1] + [0] * (CONNECTIONS - 1)
    assert [await _group_members(client, user_group(user.pk)) for user in users] == [1] + [0] * (CONNECTIONS - 1)
    print(f"\nRedis round trips of a drain of {CONNECTIONS} connections ({ws_server_kind}): {round_trips}")
    assert round_trips <= MAX_ROUND_TRIPS, f"{round_trips} Redis round trips for {CONNECTIONS} connections"
    await elsewhere.close()
    await client.aclose()
