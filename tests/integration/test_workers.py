"""``WS_WORKERS=2``: two server processes on one inherited socket under the launcher's supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.live import open_ws, recv_json
from tests.support.servers import DaphneServer
from tests.support.users import make_users, session_key_for
from ws_service.protocol import CLOSE_SERVICE_RESTART

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 2
CONNECTIONS = 60


@pytest.fixture
def workers_ws(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    with DaphneServer.running_ws(
        service_env,
        logs_dir / f"workers-{ws_server_kind}.log",
        ws_server_kind,
        WS_WORKERS=str(WORKERS),
        WS_DRAIN_TIMEOUT="5",
    ) as server:
        yield server


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _established_sockets(pid: int, port: int) -> int:
    """Established TCP connections on ``port`` whose socket this process holds open."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


def _wait_for_children(pid: int, count: int, *, without: int | None = None, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = _children(pid)
        if len(children) == count and without not in children:
            return children
        time.sleep(0.1)
    raise AssertionError(f"expected {count} workers, have {_children(pid)}")


async def _welcomed(server: DaphneServer, keys: list[str]) -> list[ClientConnection]:
    sockets = []
    for key in keys:
        ws = await open_ws(server.ws_url, cookie=f"sessionid={key}")
        assert (await recv_json(ws))["type"] == "welcome"
        sockets.append(ws)
    return sockets


async def _close_code(ws: ClientConnection) -> int | None:
    try:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    return None  # unreachable: recv() only ends by raising


async def _keys(prefix: str, count: int) -> list[str]:
    users = await sync_to_async(make_users)(prefix, count)
    return [await sync_to_async(session_key_for)(user) for user in users]


async def test_two_workers_share_the_port_and_a_dead_worker_is_replaced(workers_ws: DaphneServer) -> None:
    assert workers_ws.process is not None
    supervisor = workers_ws.process.pid
    workers = await asyncio.to_thread(_wait_for_children, supervisor, WORKERS)
    sockets = await _welcomed(workers_ws, await _keys("wk", CONNECTIONS))
    try:
        held = [_established_sockets(pid, workers_ws.port) for pid in workers]
        assert sum(held) == CONNECTIONS
        assert _established_sockets(supervisor, workers_ws.port) == 0  # the supervisor never accepts

        os.kill(workers[0], signal.SIGKILL)  # a crash: the supervisor starts a new worker
        replaced = await asyncio.to_thread(_wait_for_children, supervisor, WORKERS, without=workers[0])
        assert workers[1] in replaced
        for _ in range(10):  # whichever worker accepts (a new client each time), it is ready
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(f"{workers_ws.http_url}/readyz")
                assert response.status_code == 200, response.text
        more = await _welcomed(workers_ws, await _keys("wk-after", 10))
        sockets.extend(more)
    finally:
        for ws in sockets:
            await ws.close()


async def test_sigterm_drains_every_worker_with_1012_and_the_supervisor_exits(workers_ws: DaphneServer) -> None:
    assert workers_ws.process is not None
    process = workers_ws.process
    await asyncio.to_thread(_wait_for_children, process.pid, WORKERS)
    sockets = await _welcomed(workers_ws, await _keys("wd", 20))
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    codes = [await _close_code(ws) for ws in sockets]
    assert set(codes) == {CLOSE_SERVICE_RESTART}
    assert await asyncio.to_thread(process.wait, 15) == 0
    assert time.monotonic() - started < 10
    workers_ws.process = None
