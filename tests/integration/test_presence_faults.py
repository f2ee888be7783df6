"""Presence under faults, against real processes: a drained connection leaves, a Redis restart re-joins.

Deleted with the presence feature (docs/presence.md); the faults themselves
are tested in tests/integration/test_faults.py.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.integration.test_faults import _close_frame, _delivered_after_recovery, _socket, _subscribe, own_ws
from tests.support.live import recv_type, send_json
from tests.support.servers import DaphneServer, RedisServer

__all__ = ["own_ws"]  # the fixture, shared with test_faults.py

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


async def test_a_drained_connection_leaves_presence(own_ws: DaphneServer, ws_server: DaphneServer) -> None:
    observer, _ = await _socket(ws_server, "observer")
    await _subscribe(observer, "room.drain-presence")
    leaver, _ = await _socket(own_ws, "leaver0")
    await _subscribe(leaver, "room.drain-presence")
    joined = await recv_type(observer, "presence_diff")
    while not any(u["username"] == "leaver0" for u in joined["joined"]):
        joined = await recv_type(observer, "presence_diff")

    assert own_ws.process is not None
    own_ws.process.send_signal(signal.SIGTERM)
    await _close_frame(leaver, 5)
    left = await recv_type(observer, "presence_diff", wait=5)  # the drained client's cleanup ran
    assert [u["username"] for u in left["left"]] == ["leaver0"]
    assert await asyncio.to_thread(own_ws.process.wait, 10) == 0
    own_ws.process = None
    await observer.close()


async def test_presence_is_rejoined_after_a_redis_restart(ws_server: DaphneServer, redis_server: RedisServer) -> None:
    alice, _ = await _socket(ws_server, "alice")
    bob, _ = await _socket(ws_server, "bob")
    for ws in (alice, bob):
        await _subscribe(ws, "room.redis")  # the topic _delivered_after_recovery publishes to
    redis_server.stop()
    try:
        await asyncio.sleep(1)
    finally:
        redis_server.start()  # an empty Redis: every presence entry is gone
    await _delivered_after_recovery(alice, bob, wait=20)
    await send_json(alice, {"type": "presence", "topic": "room.redis"})
    async with asyncio.timeout(20):
        for _ in range(40):
            users = (await recv_type(alice, "presence"))["users"]
            if {u["username"] for u in users} == {"alice", "bob"}:
                break
            await asyncio.sleep(1)
            await send_json(alice, {"type": "presence", "topic": "room.redis"})
        else:
            raise AssertionError(f"presence not restored: {users}")
    await alice.close()
    await bob.close()
