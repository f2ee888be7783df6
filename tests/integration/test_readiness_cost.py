"""Readiness probes cost no PostgreSQL backend each, and never answer with exception text.

Against the real web service and the ws service (both servers): many probes,
concurrent and sequential, all answer 200 while the database sees at most one
new session per service process (the probe's kept connection). With the
database unreachable the body names the failed check with a fixed word.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from tests.support.servers import HOST, DaphneServer, PostgresServer, free_port
from ws_service.launcher.options import SERVERS as WS_SERVERS

pytestmark = pytest.mark.django_db(transaction=True)

CONCURRENT = 50
SEQUENTIAL = 100
# Backends flush their session counts to pg_stat_database at most about once a second.
STATS_SETTLE_SECONDS = 1.5


def _sessions(postgres: PostgresServer) -> int:
    """Sessions ever established to the app database (pg_stat_database.sessions, PostgreSQL 14+)."""
    with psycopg.connect(host=HOST, port=postgres.port, user=postgres.user, dbname="postgres", autocommit=True) as conn:
        row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", [postgres.database]).fetchone()
    assert row is not None
    return int(row[0])


def _readiness_backends(postgres: PostgresServer) -> int:
    with psycopg.connect(host=HOST, port=postgres.port, user=postgres.user, dbname="postgres", autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'readiness'").fetchone()
    assert row is not None
    return int(row[0])


async def _probe_many(url: str) -> list[int]:
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=CONCURRENT)) as client:
        burst = await asyncio.gather(*(client.get(url) for _ in range(CONCURRENT)))
        statuses = [response.status_code for response in burst]
        for _ in range(SEQUENTIAL):
            statuses.append((await client.get(url)).status_code)
    return statuses


async def _assert_probes_reuse_one_backend(server: DaphneServer, postgres: PostgresServer) -> None:
    url = f"{server.http_url}/readyz"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(url)).status_code == 200  # the probe's connection exists from here on
    await asyncio.sleep(STATS_SETTLE_SECONDS)
    before = _sessions(postgres)
    started = time.monotonic()
    statuses = await _probe_many(url)
    elapsed = time.monotonic() - started
    await asyncio.sleep(STATS_SETTLE_SECONDS)
    new_sessions = _sessions(postgres) - before
    assert statuses == [200] * (CONCURRENT + SEQUENTIAL)
    # The two measuring connections above may be counted; the probes themselves add none.
    assert new_sessions <= 2, f"{new_sessions} new PostgreSQL sessions for {len(statuses)} probes in {elapsed:.1f}s"
    assert 1 <= _readiness_backends(postgres) <= 4  # one per service process that probed (web, ws x2, ...)


async def test_web_readiness_keeps_one_backend(web_server: DaphneServer, postgres_server: PostgresServer) -> None:
    await _assert_probes_reuse_one_backend(web_server, postgres_server)


async def test_ws_readiness_keeps_one_backend(ws_server: DaphneServer, postgres_server: PostgresServer) -> None:
    await _assert_probes_reuse_one_backend(ws_server, postgres_server)


@pytest.fixture(scope="module")
def servers_without_database(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path
) -> Iterator[list[DaphneServer]]:
    """The web service and the ws service on both servers, with DATABASE_URL pointing at a closed port."""
    env = {**service_env, "DATABASE_URL": f"postgres://app:secret-password@{HOST}:{free_port()}/app"}
    servers = [DaphneServer.web(env, logs_dir / "web-no-db.log")]
    servers += [DaphneServer.ws({**env, "WS_SERVER": kind}, logs_dir / f"ws-no-db-{kind}.log") for kind in WS_SERVERS]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_readiness_without_the_database_names_the_check_without_exception_text(
    servers_without_database: list[DaphneServer],
) -> None:
    for server in servers_without_database:
        response = httpx.get(f"{server.http_url}/readyz", timeout=10)
        assert response.status_code == 503, (server.name, response.text)
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == {"ok": False, "error": "unavailable"}, (server.name, body)
        for leak in ("Error", "connection", "secret-password", str(HOST), "port"):
            assert leak not in response.text, (server.name, leak, response.text)
        log = server.log_path.read_text()
        assert "readiness check database failed: OperationalError" in log  # the detail goes to the log


def _drop_dead_connections() -> None:
    """This process's own connections died with the server: here and in asgiref's shared ORM thread."""
    connections.close_all()
    asyncio.run(sync_to_async(connections.close_all)())


def test_readiness_replaces_its_kept_connection_after_a_database_restart(
    web_server: DaphneServer, ws_server: DaphneServer, postgres_server: PostgresServer
) -> None:
    urls = [f"{server.http_url}/readyz" for server in (web_server, ws_server)]
    assert [httpx.get(url, timeout=10).status_code for url in urls] == [200, 200]  # connections kept
    postgres_server.stop()
    try:
        for url in urls:
            response = httpx.get(url, timeout=10)
            assert response.status_code == 503
            assert response.json()["checks"]["database"] == {"ok": False, "error": "unavailable"}
    finally:
        postgres_server.start()
        _drop_dead_connections()
    assert [httpx.get(url, timeout=10).status_code for url in urls] == [200, 200]
    # Restarted while nobody probed: the kept connections are dead, and the first probe
    # reconnects within the same check instead of answering one spurious 503.
    postgres_server.stop()
    try:
        postgres_server.start()
    finally:
        _drop_dead_connections()
    assert [httpx.get(url, timeout=10).status_code for url in urls] == [200, 200]
