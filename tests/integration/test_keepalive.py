"""Server keepalive on both servers: live idle sockets stay open, dead peers are closed within the documented bound.

The bound (README, configuration): a peer that stops answering is closed within
``WS_PING_INTERVAL`` + ``WS_PING_TIMEOUT`` + 2 s (Daphne checks on a 2 s grid,
``ws_service.daphne_timeouts``) of its last sign of life.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.live import open_ws, recv_json, send_json
from tests.support.servers import DaphneServer
from tests.support.users import make_user, session_key_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PING_INTERVAL, PING_TIMEOUT, GRID = 1, 2, 2.0
BOUND = PING_INTERVAL + PING_TIMEOUT + GRID


@pytest.fixture(scope="module")
def keepalive_server(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    with DaphneServer.running_ws(
        service_env,
        logs_dir / f"keepalive-{ws_server_kind}.log",
        ws_server_kind,
        WS_PING_INTERVAL=str(PING_INTERVAL),
        WS_PING_TIMEOUT=str(PING_TIMEOUT),
    ) as server:
        yield server


async def _socket(server: DaphneServer, username: str) -> ClientConnection:
    user = await sync_to_async(make_user)(username)
    ws = await open_ws(server.ws_url, cookie=f"sessionid={await sync_to_async(session_key_for)(user)}")
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def _drain_until_closed(ws: ClientConnection) -> None:
    """Whatever the server sent before giving up, then the end of the connection (``ConnectionClosed``)."""
    async with asyncio.timeout(5):
        for _ in range(1000):
            await ws.recv()


async def test_a_silent_peer_is_closed_within_the_bound_and_a_live_one_stays(keepalive_server: DaphneServer) -> None:
    live, dead = await _socket(keepalive_server, "alive"), await _socket(keepalive_server, "silent")
    assert dead.transport is not None
    dead.transport.pause_reading()  # reads nothing: answers no ping, as a peer that vanished
    silent_since = time.monotonic()
    await asyncio.sleep(BOUND + 1.5)
    dead.transport.resume_reading()
    with pytest.raises(ConnectionClosed):
        await _drain_until_closed(dead)
    assert time.monotonic() - silent_since < BOUND + 1.5 + 5
    # The live client answered every ping (its library does) and is still served.
    await send_json(live, {"type": "ping"})
    assert (await recv_json(live))["type"] == "pong"
    assert live.protocol.state.name == "OPEN"
    await live.close()


async def test_idle_sockets_get_pings_and_stay_open_past_several_intervals(keepalive_server: DaphneServer) -> None:
    ws = await _socket(keepalive_server, "idler")
    assert ws.transport is not None
    received = 0
    # Count the server's pings on the wire: on an idle socket each read is one ping frame, first byte 0x89 (FIN + ping).
    protocol: Any = ws.transport.get_protocol()
    original = protocol.data_received

    def data_received(data: bytes) -> None:
        nonlocal received
        received += data[:1] == b"\x89"
        original(data)

    protocol.data_received = data_received
    await asyncio.sleep(3 * (PING_INTERVAL + GRID))
    assert received >= 2, "the server stopped pinging an idle socket"
    await send_json(ws, {"type": "ping"})
    assert (await recv_json(ws))["type"] == "pong"
    await ws.close()
