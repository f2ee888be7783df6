"""Fault injection against real processes: SIGTERM drain, Redis and PostgreSQL outages.

Redis and PostgreSQL are the session's shared servers: every test that stops
one starts it again before it ends, whatever happens.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from shared.redis_client import get_redis
from tests.support.live import login, open_ws, recv_json, recv_type, send_json
from tests.support.servers import DaphneServer, PostgresServer, RedisServer
from tests.support.users import PASSWORD, make_user, session_key_for
from ws_service.connection_slots import open_connections
from ws_service.protocol import CLOSE_SERVICE_RESTART, CLOSE_TRY_AGAIN_LATER
from wsclient import WsClient
from wsclient.backoff import Backoff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def own_ws(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    """A ws process of this test's own (on each server), so it can be stopped and restarted."""
    with DaphneServer.running_ws(
        service_env, logs_dir / f"faults-ws-{ws_server_kind}.log", ws_server_kind, WS_DRAIN_TIMEOUT="8"
    ) as server:
        yield server


async def _socket(server: DaphneServer, username: str) -> tuple[ClientConnection, str]:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(server.ws_url, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["type"] == "welcome"
    return ws, key


async def _user_id(username: str) -> int:
    user_id: int = await sync_to_async(lambda: get_user_model().objects.get(username=username).pk)()
    return user_id


async def _subscribe(ws: ClientConnection, topic: str) -> None:
    await send_json(ws, {"type": "subscribe", "topic": topic})
    await recv_type(ws, "subscribed")


async def _read_until_closed(ws: ClientConnection, wait: float) -> None:
    async with asyncio.timeout(wait):
        while True:
            await ws.recv()


async def _close_frame(ws: ClientConnection, wait: float) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await _read_until_closed(ws, wait)
    received = closed.value.rcvd
    assert received is not None, "no close frame from the server"
    return received.code, received.reason


async def _status(url: str) -> int:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(url)).status_code


async def test_sigterm_drains_with_1012_runs_cleanup_and_exits_in_time(
    own_ws: DaphneServer, ws_server: DaphneServer
) -> None:
    sockets = [(await _socket(own_ws, f"client{i}"))[0] for i in range(3)]
    await _subscribe(sockets[0], "room.drain")
    user_ids = [await _user_id(f"client{i}") for i in range(3)]
    assert [await open_connections(user_id) for user_id in user_ids] == [1, 1, 1]

    assert own_ws.process is not None
    started = time.monotonic()
    own_ws.process.send_signal(signal.SIGTERM)
    closes = await asyncio.gather(*(_close_frame(ws, 5) for ws in sockets))
    assert [code for code, _ in closes] == [CLOSE_SERVICE_RESTART] * 3
    assert all("restart" in reason for _, reason in closes)
    returncode = await asyncio.to_thread(own_ws.process.wait, 10)
    elapsed = time.monotonic() - started
    own_ws.process = None
    assert returncode == 0
    assert elapsed < 8, f"drain took {elapsed:.1f}s"
    # Each connection's cleanup ran: its slot is released now, not WS_CONNECTION_TTL_SECONDS (20 s) later.
    assert [await open_connections(user_id) for user_id in user_ids] == [0, 0, 0]
    await get_redis().aclose()
    print(f"\nSIGTERM to exit with 3 connections: {elapsed:.2f}s")


async def test_zero_messages_lost_while_publishing_across_a_ws_restart(
    own_ws: DaphneServer, web_server: DaphneServer
) -> None:
    total = 120
    await sync_to_async(make_user)("zed")
    http = await login(web_server.http_url, "zed", PASSWORD)
    listener = WsClient(
        f"{own_ws.ws_url}/ws/",
        session_cookie=http.cookies["sessionid"],
        backoff=Backoff(base=0.1, cap=0.5),
        ping_interval=None,
    )
    events = listener.events()
    await listener.start()
    await listener.subscribe("room.zero")

    async def publish_all() -> None:
        for i in range(total):
            response = await http.post(
                "/api/topics/room.zero/messages",
                json={"text": f"m{i + 1}"},
                headers={"X-CSRFToken": http.cookies["csrftoken"], "Origin": web_server.http_url},
            )
            assert response.status_code == 201, response.text
            await asyncio.sleep(0.03)

    publishing = asyncio.create_task(publish_all())
    await asyncio.sleep(1)
    await asyncio.to_thread(own_ws.stop)  # SIGTERM: drain
    await asyncio.to_thread(own_ws.start)
    await publishing

    received: list[int] = []
    async with asyncio.timeout(30):
        while len(set(received)) < total:
            event = await events.get("message")
            received.append(event["id"])
    await listener.close()
    await http.aclose()
    assert sorted(received) == list(range(1, total + 1)), "lost or duplicated messages"


async def _publish_outcome(ws: ClientConnection, text: str) -> dict[str, Any]:
    await send_json(ws, {"type": "publish", "topic": "room.redis", "text": text, "ref": text})
    while True:
        frame = await recv_json(ws)
        if frame["type"] in ("ack", "error") and frame.get("ref") == text:
            return frame


async def _delivered_after_recovery(sender: ClientConnection, receiver: ClientConnection, wait: float) -> None:
    """Publish until a message reaches ``receiver`` live (bounded by ``wait``)."""
    async with asyncio.timeout(wait):
        attempt = 0
        while True:
            attempt += 1
            outcome = await _publish_outcome(sender, f"probe-{attempt}")
            if outcome["type"] == "ack":
                try:
                    async with asyncio.timeout(2):
                        while True:
                            message = await recv_type(receiver, "message")
                            if message["id"] == outcome["id"]:
                                return
                except TimeoutError:
                    pass
            await asyncio.sleep(0.5)


@pytest.fixture
async def restores_redis(redis_server: RedisServer) -> AsyncIterator[RedisServer]:
    yield redis_server
    if redis_server.process is None:
        redis_server.start()


async def test_redis_outage_keeps_sockets_open_and_delivery_resumes(
    ws_server: DaphneServer, restores_redis: RedisServer
) -> None:
    alice, _ = await _socket(ws_server, "alice")
    bob, _ = await _socket(ws_server, "bob")
    for ws in (alice, bob):
        await _subscribe(ws, "room.redis")

    restores_redis.stop()
    # Publishing reports "unavailable" once the outage is noticed (a few seconds at most).
    async with asyncio.timeout(10):
        for attempt in range(100):
            if (await _publish_outcome(alice, f"during-outage-{attempt}"))["type"] == "error":
                break
            await asyncio.sleep(0.5)
    error = await _publish_outcome(alice, "during-outage-last")
    assert error["code"] == "unavailable"
    await send_json(bob, {"type": "ping"})
    assert (await recv_type(bob, "pong"))["type"] == "pong"  # still open
    assert await _status(f"{ws_server.http_url}/readyz") == 503
    refused, _ = await _socket_closed_code(ws_server)
    assert refused == CLOSE_TRY_AGAIN_LATER

    restores_redis.start()  # an empty Redis: every group is gone
    await _delivered_after_recovery(alice, bob, wait=20)
    await alice.close()
    await bob.close()


async def _socket_closed_code(server: DaphneServer) -> tuple[int, str]:
    user = await sync_to_async(make_user)("latecomer")
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(server.ws_url, cookie=f"sessionid={key}")
    return await _close_frame(ws, 10)


async def test_flushall_is_detected_and_groups_are_restored(ws_server: DaphneServer, redis_server: RedisServer) -> None:
    alice, _ = await _socket(ws_server, "alice")
    bob, _ = await _socket(ws_server, "bob")
    for ws in (alice, bob):
        await _subscribe(ws, "room.redis")
    client = redis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    await _delivered_after_recovery(alice, bob, wait=15)
    await alice.close()
    await bob.close()


def test_postgres_outage_gives_clear_errors_and_recovers_without_restart(
    ws_server: DaphneServer, postgres_server: PostgresServer
) -> None:
    from django.db import connection, connections

    user = make_user("pat")
    key = session_key_for(user)
    other_key = session_key_for(user)  # a second session of the same user, with no connection open

    async def scenario() -> None:
        ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}")
        assert (await recv_json(ws))["type"] == "welcome"
        postgres_server.stop()
        try:
            await send_json(ws, {"type": "publish", "topic": "room.pg", "text": "while down", "ref": "down"})
            error = await recv_type(ws, "error", wait=15)
            assert error["code"] == "unavailable"
            newcomer = await open_ws(ws_server.ws_url, cookie=f"sessionid={other_key}")
            code, _ = await _close_frame(newcomer, 15)
            assert code == CLOSE_TRY_AGAIN_LATER
            # The open connection's session is in the process's session cache: no query needed.
            cached = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}")
            assert (await recv_json(cached))["type"] == "welcome"
            await cached.close()
            assert await _status(f"{ws_server.http_url}/readyz") == 503
        finally:
            postgres_server.start()
            # This process's own connection in asgiref's shared executor thread died with the
            # server; close it so later tests (sync_to_async ORM calls) reconnect.
            await sync_to_async(connections.close_all)()
        async with asyncio.timeout(20):
            while True:
                await send_json(ws, {"type": "publish", "topic": "room.pg", "text": "after", "ref": "up"})
                reply = await recv_json(ws, 10)
                while reply["type"] not in ("ack", "error"):
                    reply = await recv_json(ws, 10)
                if reply["type"] == "ack":
                    break
                await asyncio.sleep(0.5)
        again = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}")
        assert (await recv_json(again))["type"] == "welcome"
        await again.close()
        await ws.close()

    asyncio.run(scenario())
    connection.close()  # this thread's connection died with the server; teardown reconnects
