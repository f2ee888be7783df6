"""Handshake authentication runs in parallel on a bounded set of database connections (issue #13).

Each test starts its own ws process (on each server) with
``WS_AUTH_DB_CONNECTIONS=3`` and watches PostgreSQL's ``pg_stat_activity``
for the process's authentication connections (``application_name`` ``ws-auth``).
Parallelism is shown through the database, not through timing: a handshake
whose ticket row the test holds locked waits inside PostgreSQL while other
handshakes complete.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from websockets.asyncio.client import ClientConnection

from bench.proctree import tree_pids
from shared.models import WsTicket
from shared.tickets import issue_ticket
from tests.support.live import open_ws, recv_json
from tests.support.servers import DaphneServer, PostgresServer
from tests.support.users import make_users, session_key_for
from ws_service.auth_db import application_name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BOUND = 3
BURST = 200
USERS = 10
# The bounded server's own authentication connections (other servers of the session keep theirs).
AUTH_CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = ANY(%s)"
)
WAITING_ON_LOCK = AUTH_CONNECTIONS + " AND wait_event_type = 'Lock'"
# Any backend of the database (whichever thread or connection the server uses) waiting for a lock.
ANY_WAITING_ON_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


@pytest.fixture
def bounded_ws(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    with DaphneServer.running_ws(
        service_env,
        logs_dir / f"auth-parallel-{ws_server_kind}.log",
        ws_server_kind,
        WS_AUTH_DB_CONNECTIONS=str(BOUND),
        # Small batches: a burst of the USERS sessions makes several, run in parallel on the BOUND connections.
        WS_AUTH_BATCH_SIZE="2",
        WS_MAX_CONNECTIONS_PER_USER=str(BURST),
    ) as server:
        yield server


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[psycopg.Connection[tuple[int]]]:
    """The test's own view of PostgreSQL (autocommit, outside Django)."""
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        yield connection


def _auth_names(server: DaphneServer) -> list[str]:
    """``application_name`` of each process of ``server`` (``ws-auth <pid>``)."""
    assert server.process is not None
    return [application_name(pid) for pid in tree_pids(server.process.pid)]


def _count(database: psycopg.Connection[tuple[int]], query: str, names: list[str] | None = None) -> int:
    row = database.execute(query, [names] if "%s" in query else []).fetchone()
    assert row is not None
    return int(row[0])


async def _until(
    database: psycopg.Connection[tuple[int]], query: str, wanted: int, names: list[str] | None = None, wait: float = 15
) -> None:
    """Poll (bounded) until ``query`` counts ``wanted``."""
    seen = -1
    for _ in range(int(wait / 0.05)):
        seen = await sync_to_async(_count, thread_sensitive=False)(database, query, names)
        if seen == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{query!r} counted {seen}, not {wanted}, within {wait}s")


def _cookies(prefix: str) -> list[str]:
    return [f"sessionid={session_key_for(user)}" for user in make_users(prefix, USERS)]


@asynccontextmanager
async def _locked_tickets(postgres_url: str, count: int) -> AsyncIterator[list[str]]:
    """``count`` valid tickets whose rows the test holds ``FOR UPDATE`` until the block ends."""
    user = await sync_to_async(User.objects.create_user)("locker")
    tickets = [(await sync_to_async(issue_ticket)(user))[0] for _ in range(count)]
    digests = [hashlib.sha256(ticket.encode()).hexdigest() for ticket in tickets]
    table = WsTicket._meta.db_table
    connection = await psycopg.AsyncConnection.connect(postgres_url)
    try:
        rows = await connection.execute(
            f"SELECT digest FROM {table} WHERE digest = ANY(%s) FOR UPDATE",  # noqa: S608 - the model's table
            [digests],
        )
        assert len(await rows.fetchall()) == count
        yield tickets
    finally:
        await connection.rollback()
        await connection.close()


async def _welcomed(ws: ClientConnection) -> None:
    assert (await recv_json(ws, 15))["type"] == "welcome"


async def test_a_handshake_waiting_in_the_database_does_not_hold_up_the_others(
    bounded_ws: DaphneServer, database: psycopg.Connection[tuple[int]], postgres_server: PostgresServer
) -> None:
    """Serialized on one ORM thread, the cookie handshake would wait behind the locked ticket."""
    cookie = (await sync_to_async(_cookies)("parallel"))[0]
    async with _locked_tickets(postgres_server.url, 1) as (ticket,):
        blocked = asyncio.create_task(open_ws(bounded_ws.ws_url, ticket=ticket, open_timeout=30))
        # The server waits for the row inside PostgreSQL: a database thread is busy with this handshake.
        await _until(database, ANY_WAITING_ON_LOCK, 1)
        other = await open_ws(bounded_ws.ws_url, cookie=cookie, open_timeout=10)
        await _welcomed(other)
        assert not blocked.done()
        assert _count(database, ANY_WAITING_ON_LOCK) == 1
    ticketed = await asyncio.wait_for(blocked, 30)
    await _welcomed(ticketed)
    for ws in (other, ticketed):
        await ws.close()


async def test_handshakes_beyond_the_bound_wait_for_a_connection_and_cancelled_ones_leak_none(
    bounded_ws: DaphneServer, database: psycopg.Connection[tuple[int]], postgres_server: PostgresServer
) -> None:
    names = _auth_names(bounded_ws)
    cookie = (await sync_to_async(_cookies)("beyond"))[0]
    async with _locked_tickets(postgres_server.url, BOUND + 2) as tickets:
        blocked = [asyncio.create_task(open_ws(bounded_ws.ws_url, ticket=t, open_timeout=60)) for t in tickets]
        await _until(database, WAITING_ON_LOCK, BOUND, names)
        await asyncio.sleep(0.5)  # time for a fourth connection to appear, if one could
        assert _count(database, AUTH_CONNECTIONS, names) == BOUND
        # The clients give up mid-handshake: their handshakes end with the lock still held.
        for task in blocked:
            task.cancel()
        for task in blocked:
            with suppress(asyncio.CancelledError):
                await task
    # The lock is gone: the abandoned work finishes; the pool still holds only its own connections.
    await _until(database, WAITING_ON_LOCK, 0, names)
    ws = await open_ws(bounded_ws.ws_url, cookie=cookie, open_timeout=15)
    await _welcomed(ws)
    await ws.close()
    assert _count(database, AUTH_CONNECTIONS, names) <= BOUND


async def test_a_burst_of_handshakes_authenticates_on_at_most_the_configured_connections(
    bounded_ws: DaphneServer, database: psycopg.Connection[tuple[int]], postgres_server: PostgresServer
) -> None:
    names = _auth_names(bounded_ws)
    cookies = await sync_to_async(_cookies)("burst")
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        with psycopg.connect(postgres_server.url, autocommit=True) as sampler:
            for _ in range(20_000):  # bounded: 20,000 samples at most
                if stop.is_set():
                    return
                peak = max(peak, _count(sampler, AUTH_CONNECTIONS, names))
                stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        sockets = await asyncio.gather(
            *(open_ws(bounded_ws.ws_url, cookie=cookies[i % USERS], open_timeout=60) for i in range(BURST))
        )
        await asyncio.gather(*(_welcomed(ws) for ws in sockets))
    finally:
        stop.set()
        sampler.join(10)
    assert 2 <= peak <= BOUND, f"peak of {peak} authentication connections"
    await asyncio.gather(*(ws.close() for ws in sockets))
    # None leaked: the same kept connections serve the next handshakes.
    assert _count(database, AUTH_CONNECTIONS, names) <= BOUND
    again = await asyncio.gather(*(open_ws(bounded_ws.ws_url, cookie=cookie, open_timeout=30) for cookie in cookies))
    await asyncio.gather(*(_welcomed(ws) for ws in again))
    await asyncio.gather(*(ws.close() for ws in again))
    assert _count(database, AUTH_CONNECTIONS, names) <= BOUND


async def test_a_kept_connection_killed_by_the_database_costs_no_refused_handshake(
    bounded_ws: DaphneServer, database: psycopg.Connection[tuple[int]]
) -> None:
    """No ``SELECT 1`` before each use: a dead kept connection fails its query, and the work runs again."""
    names = _auth_names(bounded_ws)
    cookies = await sync_to_async(_cookies)("killed")
    first = await asyncio.gather(*(open_ws(bounded_ws.ws_url, cookie=cookie) for cookie in cookies))
    await asyncio.gather(*(_welcomed(ws) for ws in first))
    killed = database.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = ANY(%s)",
        [names],
    ).fetchone()
    assert killed is not None
    assert killed[0] >= 1
    await _until(database, AUTH_CONNECTIONS, 0, names)
    second = await asyncio.gather(*(open_ws(bounded_ws.ws_url, cookie=cookie) for cookie in cookies * 2))
    await asyncio.gather(*(_welcomed(ws) for ws in second))
    for ws in (*first, *second):
        await ws.close()
