"""What an idle connection adds to the objects the garbage collector tracks, on a real ws process (#12, #13).

A full (oldest-generation) collection walks every tracked object, so its cost
at 10,000 idle connections is proportional to what each one holds; so is
much of the memory. Each run starts the ws service on each server through
``bench.servers.traced`` without tracemalloc (the launcher in one process,
counting ``gc.get_objects()`` by type after a full collection on SIGUSR1), opens one
connection per user (so per-user and per-process state exists already),
counts, opens :data:`N` more idle authenticated connections, counts again,
and checks the growth per connection against a ceiling. It is a structural
count, not a timing: the per-connection objects are the same on every run.

On Daphne it also checks that no HTTP request object stays per connection
(``ws_service.daphne_upgrade``).
On both servers it checks that the receive queue is not an
``asyncio.Queue`` (``ws_service.receive_queue``), and on Uvicorn that the
handshake's response is not kept (``ws_service.uvicorn_upgrade``).

The ceilings sit a few objects above what this test measures today (Daphne
about 72, Uvicorn about 74; ``python -m bench memprofile`` about 72 on
both), below what it measured while the per-user connection limit and
Channels' ``URLRouter`` stayed on the call stack (their coroutines, the
router's scope copy and loop iterator, the session lease left in the outer
scope: about 78 and 79), and well below what it measured before the
handshake middlewares handed connections over instead of staying on their
call stacks with scope copies and closures, before Daphne's upgraded HTTP
requests were forgotten (about 133 and 119) and before the lean receive
queue (about 80 and 90). ``python -m bench memprofile --server
daphne|uvicorn [--bare]`` shows what they are.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection

from tests.support.live import open_ws, recv_json
from tests.support.servers import HOST, DaphneServer
from tests.support.users import make_users, session_key_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

USERS = 10
N = 200
BATCH = 25
COUNT_TIMEOUT = 30.0
SETTLE_SECONDS = 5.0
CEILING = {"daphne": 76, "uvicorn": 77}
HEADERS = "websockets.datastructures.Headers"


class ProbedServer:
    """A ws process whose GC-tracked objects the test can count (``bench.servers.traced``)."""

    def __init__(self, server: DaphneServer, directory: Path) -> None:
        self.server = server
        self.directory = directory
        self.taken = 0

    def tracked_objects(self) -> Counter[str]:
        """The objects the process's collector tracks, by type, after a full collection."""
        assert self.server.process is not None
        self.taken += 1
        done = self.directory / f"done-{self.taken}"
        os.kill(self.server.process.pid, signal.SIGUSR1)
        deadline = time.monotonic() + COUNT_TIMEOUT
        while not done.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no object count within {COUNT_TIMEOUT}s")
            time.sleep(0.05)
        return Counter(json.loads((self.directory / f"types-{self.taken}.json").read_text()))


@pytest.fixture
def probed_ws(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str, tmp_path: Path
) -> Iterator[ProbedServer]:
    env = {
        **service_env,
        "WS_SERVER": ws_server_kind,
        "WS_WORKERS": "1",
        "WS_BIND": HOST,
        "WS_PORT": "{port}",
        "WS_MAX_CONNECTIONS_PER_USER": str(N),
        "WS_HANDSHAKES_PER_ADDRESS_PER_SECOND": "0",
        "BENCH_TRACE_DIR": str(tmp_path),
        "BENCH_TRACE_MALLOC": "0",
    }
    command = [sys.executable, "-m", "bench.servers.traced"]
    server = DaphneServer("ws", command, env, logs_dir / f"idle-objects-{ws_server_kind}.log")
    server.start()
    try:
        yield ProbedServer(server, tmp_path)
    finally:
        server.stop()


async def _open_welcomed(ws_url: str, cookies: list[str]) -> list[ClientConnection]:
    """One welcomed connection per cookie, :data:`BATCH` handshakes at a time."""
    opened: list[ClientConnection] = []
    for start in range(0, len(cookies), BATCH):
        batch = await asyncio.gather(*(open_ws(ws_url, cookie=cookie) for cookie in cookies[start : start + BATCH]))
        for ws in batch:
            assert (await recv_json(ws, wait=10))["type"] == "welcome"
        opened.extend(batch)
    return opened


async def _tracked_objects_when_idle(probe: ProbedServer) -> Counter[str]:
    # Per-process work the connects started settles (slot refresh, presence), and Daphne forgets the
    # handshakes' finished HTTP requests: its application checker runs every 1 s, its timeout sweep every 2 s.
    await asyncio.sleep(SETTLE_SECONDS)
    return await sync_to_async(probe.tracked_objects, thread_sensitive=False)()


async def test_an_idle_connection_adds_few_gc_tracked_objects(probed_ws: ProbedServer, ws_server_kind: str) -> None:
    users = await sync_to_async(make_users)(f"gc-{ws_server_kind}-", USERS)
    cookies = [f"sessionid={await sync_to_async(session_key_for)(user)}" for user in users]
    ws_url = probed_ws.server.ws_url
    first = await _open_welcomed(ws_url, cookies)  # per-user groups, slots and caches exist from here on
    before = await _tracked_objects_when_idle(probed_ws)
    idle = await _open_welcomed(ws_url, [cookies[i % USERS] for i in range(N)])
    after = await _tracked_objects_when_idle(probed_ws)
    for ws in (*first, *idle):
        await ws.close()
    after.subtract(before)
    # Daphne's HTTP request of each upgraded handshake is forgotten (ws_service.daphne_upgrade).
    assert after["daphne.http_protocol.WebRequest"] <= 0, after["daphne.http_protocol.WebRequest"]
    # Neither server's receive queue nor Uvicorn's writable flag is an asyncio one, whose idle deques
    # hold about 3 KiB per connection (ws_service.receive_queue); Uvicorn's handshake response is
    # forgotten (ws_service.uvicorn_upgrade; its request stays in websockets' parser: one Headers).
    kept = {name: after[name] / N for name in ("asyncio.queues.Queue", "asyncio.locks.Event")}
    assert all(count <= 0 for count in kept.values()), kept
    assert after[HEADERS] / N <= 1, after[HEADERS] / N
    per_connection = after.total() / N
    largest = ", ".join(f"{name} {count / N:.2f}" for name, count in after.most_common(12))
    assert per_connection <= CEILING[ws_server_kind], (
        f"{per_connection:.1f} GC-tracked objects per idle connection on {ws_server_kind} "
        f"(ceiling {CEILING[ws_server_kind]}): {largest}; see python -m bench memprofile"
    )
