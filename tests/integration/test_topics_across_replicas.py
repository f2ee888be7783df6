"""Topics across two real ws processes (replicas) sharing PostgreSQL and Redis.

Every frame sent and received here is validated against docs/asyncapi.yaml.
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

from tests.support.live import fetch_ticket, login, open_ws, recv_json, recv_type, send_json, session_cookie
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user, session_key_for
from ws_service.protocol import CLOSE_UNAUTHENTICATED

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(scope="module")
def replicas(service_env: dict[str, str], django_db_setup: None, logs_dir: Path) -> Iterator[list[DaphneServer]]:
    with DaphneServer.running_replicas(service_env, logs_dir, "replica", 2) as servers:
        yield servers


async def _user_socket(replica: DaphneServer, username: str) -> tuple[ClientConnection, int]:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(replica.ws_url, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["user"]["id"] == user.pk
    return ws, user.pk


async def _subscribe(ws: ClientConnection, topic: str, since: int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "topic": topic}
    if since is not None:
        frame["since"] = since
    await send_json(ws, frame)
    return await recv_type(ws, "subscribed")


async def _publish(ws: ClientConnection, topic: str, text: str) -> int:
    await send_json(ws, {"type": "publish", "topic": topic, "text": text, "ref": text})
    ack = await recv_type(ws, "ack")
    assert ack["ref"] == text
    ack_id: int = ack["id"]
    return ack_id


async def test_publish_on_one_replica_reaches_subscribers_on_the_other(replicas: list[DaphneServer]) -> None:
    alice, _ = await _user_socket(replicas[0], "alice")
    bob, bob_id = await _user_socket(replicas[1], "bob")
    await _subscribe(alice, "room.cross")
    message_id = await _publish(bob, "room.cross", "hello from replica 1")
    message = await recv_type(alice, "message")
    assert message["id"] == message_id
    assert message["author"] == {"id": bob_id, "username": "bob"}
    await alice.close()
    await bob.close()


async def test_reconnect_with_since_recovers_messages_published_over_ws_and_http(
    replicas: list[DaphneServer], web_server: DaphneServer
) -> None:
    await sync_to_async(make_user)("carol")
    carol_http = await login(web_server.http_url, "carol", PASSWORD)
    carol = await open_ws(replicas[0].ws_url, cookie=session_cookie(carol_http))
    await recv_json(carol)
    await _subscribe(carol, "room.recover")
    dave, _ = await _user_socket(replicas[1], "dave")
    first = await _publish(dave, "room.recover", "before")
    assert (await recv_type(carol, "message"))["id"] == first
    await carol.close()

    # While carol is away: one message over WebSocket, one over HTTP.
    await _publish(dave, "room.recover", "missed over ws")
    response = await carol_http.post(
        "/api/topics/room.recover/messages",
        json={"text": "missed over http"},
        headers={"X-CSRFToken": carol_http.cookies["csrftoken"], "Origin": web_server.http_url},
    )
    assert response.status_code == 201, response.text

    carol = await open_ws(replicas[1].ws_url, cookie=session_cookie(carol_http))
    await recv_json(carol)
    subscribed = await _subscribe(carol, "room.recover", since=first)
    assert subscribed["last_id"] == first + 2
    replay = [await recv_type(carol, "message") for _ in range(2)]
    assert [m["id"] for m in replay] == [first + 1, first + 2]
    assert [m["text"] for m in replay] == ["missed over ws", "missed over http"]
    live = await _publish(dave, "room.recover", "after")
    assert (await recv_type(carol, "message"))["id"] == live  # nothing duplicated in between
    await carol.close()
    await dave.close()
    await carol_http.aclose()


async def _read_until_closed(ws: ClientConnection, wait: float) -> None:
    async with asyncio.timeout(wait):
        while True:
            await recv_json(ws, wait)


async def _close_code(ws: ClientConnection, wait: float) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        await _read_until_closed(ws, wait)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_logout_closes_the_users_sockets_on_every_replica_within_2s(
    replicas: list[DaphneServer], web_server: DaphneServer
) -> None:
    await sync_to_async(make_user)("erin")
    erin_http = await login(web_server.http_url, "erin", PASSWORD)
    cookie = session_cookie(erin_http)
    ticket = (await fetch_ticket(erin_http))["ticket"]
    sockets = [
        await open_ws(replicas[0].ws_url, cookie=cookie),
        await open_ws(replicas[1].ws_url, cookie=cookie),
        await open_ws(replicas[1].ws_url, ticket=ticket),
    ]
    for ws in sockets:
        await recv_json(ws)
    started = time.monotonic()
    response = await erin_http.post(
        "/accounts/logout/", headers={"X-CSRFToken": erin_http.cookies["csrftoken"], "Origin": web_server.http_url}
    )
    assert response.status_code == 302
    codes = await asyncio.gather(*(_close_code(ws, 2.5) for ws in sockets))
    elapsed = time.monotonic() - started
    assert codes == [CLOSE_UNAUTHENTICATED] * 3
    assert elapsed < 2.0, f"sockets closed after {elapsed:.2f}s"
    await erin_http.aclose()
