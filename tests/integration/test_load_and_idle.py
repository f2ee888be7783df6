"""Real Daphne under concurrency: isolation, a connect burst, a long idle socket."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection

from shared.push import broadcast, push_to_user
from tests.support.live import open_ws, recv_json, send_json
from tests.support.servers import DaphneServer
from tests.support.users import make_user, make_users, session_key_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ISOLATION_USERS = 200
BURST = 1000
IDLE_SECONDS = 60


def _sessions(prefix: str, count: int) -> list[tuple[int, str]]:
    return [(user.pk, session_key_for(user)) for user in make_users(prefix, count)]


async def test_concurrent_users_each_see_only_themselves(ws_server: DaphneServer) -> None:
    sessions = await sync_to_async(_sessions)("iso", ISOLATION_USERS)

    async def connect(key: str) -> tuple[ClientConnection, int]:
        ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}", open_timeout=30)
        welcome = await recv_json(ws, 30)
        return ws, welcome["user"]["id"]

    async def whoami(ws: ClientConnection) -> int:
        await send_json(ws, {"type": "whoami"})
        reply = await recv_json(ws, 30)
        user_id: int = reply["user"]["id"]
        return user_id

    # All sockets open at once, then all ask at once.
    results = await asyncio.gather(*(connect(key) for _, key in sessions), return_exceptions=True)
    opened = [result for result in results if not isinstance(result, BaseException)]
    try:
        failures = [result for result in results if isinstance(result, BaseException)]
        assert failures == [], f"{len(failures)} connects failed, first: {failures[:1]!r}"
        seen = await asyncio.gather(*(whoami(ws) for ws, _ in opened))
    finally:
        await asyncio.gather(*(ws.close() for ws, _ in opened))
    expected = [user_id for user_id, _ in sessions]
    assert [welcomed for _, welcomed in opened] == expected
    assert seen == expected


async def test_burst_of_concurrent_connects_all_succeed(ws_server: DaphneServer) -> None:
    # 20 connections for each of 50 users: WS_MAX_CONNECTIONS_PER_USER is 20.
    sessions = await sync_to_async(_sessions)("burst", BURST // 20)
    started = time.monotonic()

    async def one(key: str) -> ClientConnection:
        ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}", open_timeout=60)
        welcome = await recv_json(ws, 60)
        assert welcome["type"] == "welcome"
        return ws

    keys = [key for _, key in sessions for _ in range(20)]
    results = await asyncio.gather(*(one(key) for key in keys), return_exceptions=True)
    elapsed = time.monotonic() - started
    failures = [r for r in results if isinstance(r, BaseException)]
    sockets = [r for r in results if isinstance(r, ClientConnection)]
    try:
        assert failures == [], f"{len(failures)} of {BURST} failed, first: {failures[:1]!r}"
        # Every socket is live and subscribed: one broadcast reaches all of them.
        await broadcast({"type": "notice", "n": 1})
        delivered = await asyncio.gather(*(recv_json(ws, 30, validate=False) for ws in sockets))
        assert all(message == {"type": "notice", "n": 1} for message in delivered)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
    print(f"\n{BURST} concurrent connects+auth in {elapsed:.1f}s")


async def test_idle_connection_stays_open_and_still_receives(ws_server: DaphneServer) -> None:
    user = await sync_to_async(make_user)("idle")
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["type"] == "welcome"
    await asyncio.sleep(IDLE_SECONDS)
    await push_to_user(user.pk, {"type": "notice", "text": "after a minute"})
    assert await recv_json(ws, validate=False) == {"type": "notice", "text": "after a minute"}
    await send_json(ws, {"type": "ping"})
    assert await recv_json(ws) == {"type": "pong"}
    await ws.close()
