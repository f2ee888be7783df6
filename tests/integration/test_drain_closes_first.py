"""A drain sends every 1012 at once: the process's cleanup in Redis never holds the closes back.

On SIGTERM a ws process closes its connections (1012) and drops its state in
Redis (groups, slots, presence: ``ws_service.launcher.drain``), bounded by
the drain's grace. With 10,000 connections that cleanup costs
seconds of round trips and of building them; if the closes waited for it,
every client would stay on a draining server that long, and miss that much
more. Here the ws process has a Redis of its own, which is frozen (SIGSTOP:
a hung Redis) right before SIGTERM, so its cleanup cannot finish and times out
(a warning in the log, once the grace has passed). Every client must have its
1012 before that warning: the closes went out first. The connections' own
cleanup needs no Redis round trip then (the process's cleanup took it over
when it started), so the drain still sees every connection gone in time.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection

from tests.support.live import open_ws, recv_json, server_close_code
from tests.support.servers import DaphneServer, RedisServer
from tests.support.users import make_users, session_key_for
from ws_service.protocol import CLOSE_SERVICE_RESTART

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONNECTIONS = 40
DRAIN_TIMEOUT_SECONDS = 4
CLEANUP_TIMED_OUT = "drain cleanup took over"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis for this test's ws process only: freezing it stalls nobody else."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)
        server.destroy()


@pytest.fixture
def draining_ws(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str, own_redis: RedisServer
) -> Iterator[DaphneServer]:
    with DaphneServer.running_ws(
        service_env,
        logs_dir / f"drain-closes-first-{ws_server_kind}.log",
        ws_server_kind,
        REDIS_URL=own_redis.url,
        WS_DRAIN_TIMEOUT=str(DRAIN_TIMEOUT_SECONDS),
        WS_HANDSHAKES_PER_ADDRESS_PER_SECOND="100000",
        WS_HANDSHAKE_BURST_PER_ADDRESS="100000",
    ) as server:
        yield server


async def _welcomed(url: str, key: str) -> ClientConnection:
    ws = await open_ws(url, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def test_closes_do_not_wait_for_the_process_cleanup(
    draining_ws: DaphneServer, own_redis: RedisServer, ws_server_kind: str
) -> None:
    users = await sync_to_async(make_users)(f"closes-first-{ws_server_kind}-", CONNECTIONS)
    keys = [await sync_to_async(session_key_for)(user) for user in users]
    sockets = [await _welcomed(draining_ws.ws_url, key) for key in keys]
    assert draining_ws.process is not None
    assert own_redis.process is not None

    own_redis.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        draining_ws.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(server_close_code(ws, DRAIN_TIMEOUT_SECONDS) for ws in sockets))
        elapsed = time.monotonic() - started
        log_when_closed = draining_ws.log_path.read_text()
        # Frozen past the cleanup's bound, so that it times out: the closes cannot have followed it.
        await asyncio.sleep(max(0.0, started + DRAIN_TIMEOUT_SECONDS + 1.0 - time.monotonic()))
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
    returncode = await asyncio.to_thread(draining_ws.process.wait, DRAIN_TIMEOUT_SECONDS + 10)
    draining_ws.process = None

    print(f"\n{CONNECTIONS} closes {elapsed:.2f}s after SIGTERM with Redis frozen ({ws_server_kind})")
    assert codes == [CLOSE_SERVICE_RESTART] * CONNECTIONS
    assert CLEANUP_TIMED_OUT not in log_when_closed, "the closes waited for the process's cleanup"
    assert elapsed < DRAIN_TIMEOUT_SECONDS, f"the last 1012 came {elapsed:.2f}s after SIGTERM"
    assert returncode == 0
    log = draining_ws.log_path.read_text()
    assert CLEANUP_TIMED_OUT in log, "Redis was frozen: the cleanup cannot have finished in time"
    assert f"drained {CONNECTIONS} connections" in log, "the drain ran out of grace"
