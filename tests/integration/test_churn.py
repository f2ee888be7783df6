"""1,000 connect/disconnect cycles against a real Daphne leave nothing behind.

After a warm-up, the ws process's resident memory, the channel layer's group
membership and the per-user connection counters are recorded; 1,000
connections then open (authenticated, welcomed) and close in waves. Once the
server has run every connection's cleanup:

* group membership (members of every ``<prefix>:group:*`` sorted set, the
  channels-redis group key format) is back to the baseline exactly;
* every per-user connection counter is back to 0;
* RSS does not grow with the connections: over :data:`ROUNDS` further rounds
  of 1,000, the median growth per round is at most ``RSS_TOLERANCE_MIB``
  (2 MiB); a leak of 2 KiB per connection would exceed it in every round.

The warm-up is 5,000 cycles because RSS grows in steps of about 3 MiB over
the first few thousand connections (allocator arenas, caches) and is flat
afterwards: measured 124.1 MiB after 2,000, then 127.5, 127.7, 130.6, 130.6,
130.6 MiB after each further round of 1,000 (with the per-process node,
batched presence and the #11 budgets; before them it was flat after 2,000).
A step can still come later (one round of 1,000 went 145.7 → 152.7 MiB, the
next three stayed at 152.7), so one round's growth is no measure of a leak:
the median of the rounds is, as a leak grows RSS in every one of them.
Group membership must be back to its value from before the warm-up, so the
warm-up is checked for leaks too (this caught the channel-layer monitor's
first check re-adding the groups of closing connections).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from shared.redis_client import get_redis
from tests.support.live import open_ws, recv_json
from tests.support.servers import DaphneServer
from tests.support.users import make_users, session_key_for
from ws_service.connection_slots import user_key

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

USERS = 50  # with WAVE connections at a time, each user holds one: far below the per-user limit
WAVE = 50
CYCLES = 1000  # per measured round
ROUNDS = 5
WARM_UP = 5000  # RSS plateaus after a few thousand cycles (allocator arenas, caches)
RSS_TOLERANCE_MIB = 2.0  # median growth per round of CYCLES
CLEANUP_WAIT = 15.0


@pytest.fixture
def churn_server(service_env: dict[str, str], django_db_setup: None, logs_dir: Path) -> Iterator[DaphneServer]:
    """A ws process of its own, so its memory reflects only this test."""
    with DaphneServer.running_ws_env(service_env, logs_dir / "churn.log") as server:
        yield server


@pytest.fixture
async def redis_closed_after() -> AsyncIterator[None]:
    """The test's Redis client (``get_redis()``) is closed with its loop, not left to the GC."""
    yield
    await get_redis().aclose()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


async def _group_members() -> int:
    client = get_redis()
    total = 0
    async for key in client.scan_iter(match=f"{settings.CHANNEL_LAYER_PREFIX}:group:*", count=1000):
        total += int(await client.zcard(key))
    return total


async def _groups() -> dict[str, int]:
    """Members per group key, for failure messages."""
    client = get_redis()
    keys = [key async for key in client.scan_iter(match=f"{settings.CHANNEL_LAYER_PREFIX}:group:*", count=1000)]
    return {str(key): int(await client.zcard(key)) for key in keys}


async def _open_connections(user_ids: list[int]) -> int:
    client = get_redis()
    return sum([int(await client.zcard(user_key(user_id))) for user_id in user_ids])


async def _cycle(server: DaphneServer, cookies: list[str], count: int) -> None:
    """``count`` connections, ``WAVE`` at a time: open, read the welcome, close."""

    async def one(cookie: str) -> None:
        ws = await open_ws(server.ws_url, cookie=cookie, open_timeout=30)
        try:
            assert (await recv_json(ws, 30))["type"] == "welcome"
        finally:
            await ws.close()

    for start in range(0, count, WAVE):
        size = min(WAVE, count - start)
        await asyncio.gather(*(one(cookies[i % len(cookies)]) for i in range(size)))


async def _stable_members(user_ids: list[int]) -> int:
    """Group members once every connection is cleaned up and the count holds still for a second."""
    deadline = time.monotonic() + CLEANUP_WAIT
    previous = -1
    while time.monotonic() < deadline:
        members = await _group_members()
        if members == previous and await _open_connections(user_ids) == 0:
            return members
        previous = members
        await asyncio.sleep(1)
    raise AssertionError(f"cleanup did not settle within {CLEANUP_WAIT}s: {await _groups()}")


async def _settled(baseline_members: int, user_ids: list[int]) -> tuple[int, int]:
    """Group members and open-connection count, once cleanup has run (bounded by CLEANUP_WAIT)."""
    deadline = time.monotonic() + CLEANUP_WAIT
    while True:
        members, connections = await _group_members(), await _open_connections(user_ids)
        if (members, connections) == (baseline_members, 0) or time.monotonic() > deadline:
            return members, connections
        await asyncio.sleep(0.2)


async def test_connection_churn_leaves_no_leaks(churn_server: DaphneServer, redis_closed_after: None) -> None:
    assert churn_server.process is not None
    pid = churn_server.process.pid
    users = await sync_to_async(make_users)("churn", USERS)
    keys = [await sync_to_async(session_key_for)(user) for user in users]
    cookies = [f"sessionid={key}" for key in keys]
    user_ids = [user.pk for user in users]

    baseline_members = await _stable_members(user_ids)  # whatever earlier tests left, once it holds still
    await _cycle(churn_server, cookies, WARM_UP)
    assert await _settled(baseline_members, user_ids) == (baseline_members, 0), await _groups()
    rss = [_rss_mib(pid)]

    started = time.monotonic()
    for _ in range(ROUNDS):
        await _cycle(churn_server, cookies, CYCLES)
        members, connections = await _settled(baseline_members, user_ids)
        assert (members, connections) == (baseline_members, 0), await _groups()
        rss.append(_rss_mib(pid))
    elapsed = time.monotonic() - started
    growth = [after - before for before, after in itertools.pairwise(rss)]

    print(
        f"\n{ROUNDS} x {CYCLES} connect/disconnect cycles in {elapsed:.1f}s; "
        f"RSS {' -> '.join(f'{value:.1f}' for value in rss)} MiB; group members {baseline_members} -> {members}"
    )
    assert statistics.median(growth) <= RSS_TOLERANCE_MIB, f"RSS growth per round of {CYCLES}: {growth} MiB"
