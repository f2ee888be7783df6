"""Bad input against the ws service under real Daphne: each case ends with an exact code.

Frame mistakes get an error frame and the connection stays open (checked with
a ping afterwards); frames over the rate limit get ``rate_limited`` and a
flood is closed with 1008; an oversize message closes with 1009; bad tickets
close with 4401, a foreign origin gets HTTP 403, and a user's connection over
the limit is closed with 4429. Runs with the default limits (docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from shared.models import WsTicket
from shared.tickets import issue_ticket
from tests.support.live import open_ws, page_origin, recv_json, send_json
from tests.support.servers import DaphneServer
from tests.support.users import make_user, session_key_for
from ws_service.protocol import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_UNAUTHENTICATED,
)

pytestmark = pytest.mark.django_db(transaction=True)

MAX_MESSAGE_BYTES = 64 * 1024
DEFAULT_MAX_CONNECTIONS = 20
LEAVERS = 20  # handshakes abandoned while their session is read
FLOOD_FRAMES = 500  # far more than burst (40) + strikes (50)


async def _session(username: str) -> str:
    user = await sync_to_async(make_user)(username)
    return f"sessionid={await sync_to_async(session_key_for)(user)}"


async def _welcomed(ws_server: DaphneServer, cookie: str) -> ClientConnection:
    ws = await open_ws(ws_server.ws_url, cookie=cookie)
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def _read_until_closed(ws: ClientConnection, wait: float = 10) -> tuple[int, list[dict[str, Any]]]:
    """Read frames until the server closes (bounded by ``wait``); its close code and the frames read."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):  # how every read ends
        async with asyncio.timeout(wait):
            while True:
                frames.append(json.loads(await ws.recv()))
    received = ws.protocol.close_rcvd
    assert received is not None, f"the server sent no close frame (close code {ws.close_code})"
    return received.code, frames


async def _close_code(ws: ClientConnection, wait: float = 10) -> int:
    """Read until the server closes; the close code it sent."""
    code, _ = await _read_until_closed(ws, wait)
    return code


async def _still_answers_ping(ws: ClientConnection) -> None:
    await send_json(ws, {"type": "ping"})
    assert await recv_json(ws) == {"type": "pong"}


def _nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return {"type": "ping", "x": value}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[" * 60_000, "bad_json"),  # deeper than the parser goes
        (b'{"type": "ping"}', "bad_message"),  # binary
        ('["ping"]', "bad_message"),
        ('{"type": 5}', "bad_message"),
        (json.dumps(_nested(17)), "bad_message"),  # default WS_MAX_JSON_DEPTH is 16
        (json.dumps({"type": "ping", "x": "a" * 8193}), "bad_message"),  # default WS_MAX_STRING_LENGTH is 8192
        (json.dumps({"type": "ping", "k" * 8193: 1}), "bad_message"),
        ('{"type": "ping", "x": "\\ud800"}', "bad_message"),  # a lone surrogate: not valid Unicode
        ('{"type": "launch_missiles"}', "unknown_type"),
    ],
    # Plain ids: a "{" in PYTEST_CURRENT_TEST would break the servers' env templating.
    ids=[
        "not-json",
        "too-deep-to-parse",
        "binary",
        "array",
        "type-not-string",
        "depth-17",
        "long-string",
        "long-key",
        "lone-surrogate",
        "unknown-type",
    ],
)
async def test_bad_frames_get_an_exact_error_code_and_the_connection_stays_open(
    ws_server: DaphneServer, frame: str | bytes, code: str
) -> None:
    ws = await _welcomed(ws_server, await _session("alice"))
    await ws.send(frame)
    error = await recv_json(ws)
    assert (error["type"], error["code"]) == ("error", code)
    await _still_answers_ping(ws)
    await ws.close()


async def test_frames_over_the_rate_limit_get_rate_limited_and_other_connections_are_unaffected(
    ws_server: DaphneServer,
) -> None:
    cookie = await _session("alice")
    ws = await _welcomed(ws_server, cookie)
    for _ in range(45):  # default burst: 40
        await ws.send('{"type": "ping", "ref": "fast"}')
    replies = [await recv_json(ws, validate=False) for _ in range(45)]
    errors = [reply for reply in replies if reply["type"] == "error"]
    assert errors
    assert all((error["code"], error["ref"]) == ("rate_limited", "fast") for error in errors)
    assert sum(reply == {"type": "pong", "ref": "fast"} for reply in replies) == 45 - len(errors) >= 40
    other = await _welcomed(ws_server, cookie)  # the bucket is per connection
    await _still_answers_ping(other)
    await asyncio.gather(ws.close(), other.close())


async def test_a_flood_is_rate_limited_then_closed_with_1008(ws_server: DaphneServer) -> None:
    ws = await _welcomed(ws_server, await _session("alice"))
    ping = json.dumps({"type": "ping", "ref": "flood"})
    for _ in range(FLOOD_FRAMES):
        try:
            await ws.send(ping)
        except ConnectionClosed:
            break
    code, replies = await _read_until_closed(ws)
    assert code == CLOSE_POLICY_VIOLATION
    limited = [reply for reply in replies if reply["type"] == "error"]
    assert limited, "no frame was rate limited"
    assert all(reply["code"] == "rate_limited" and reply["ref"] == "flood" for reply in limited)
    # The burst went through; the 50th rejection closed instead of answering; nothing after it ran.
    pongs = sum(reply == {"type": "pong", "ref": "flood"} for reply in replies)
    assert pongs >= 40
    assert len(limited) == 49
    assert pongs + len(limited) == len(replies) < FLOOD_FRAMES


async def test_forged_expired_and_replayed_tickets_close_4401(ws_server: DaphneServer) -> None:
    user = await sync_to_async(make_user)("alice")
    ticket, _ = await sync_to_async(issue_ticket)(user)
    ws = await open_ws(ws_server.ws_url, ticket=ticket)
    assert (await recv_json(ws))["type"] == "welcome"
    await ws.close()
    replayed = await open_ws(ws_server.ws_url, ticket=ticket)
    assert await _close_code(replayed) == CLOSE_UNAUTHENTICATED
    forged = await open_ws(ws_server.ws_url, ticket="A" * 43)
    assert await _close_code(forged) == CLOSE_UNAUTHENTICATED
    expired_ticket, _ = await sync_to_async(issue_ticket)(user)
    await sync_to_async(WsTicket.objects.update)(expires_at=timezone.now() - timedelta(seconds=1))
    expired = await open_ws(ws_server.ws_url, ticket=expired_ticket)
    assert await _close_code(expired) == CLOSE_UNAUTHENTICATED


async def test_a_foreign_origin_gets_403(ws_server: DaphneServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(ws_server.ws_url, origin="https://evil.example", cookie=await _session("alice"))
    assert refused.value.response.status_code == 403


async def test_a_message_at_the_size_limit_passes_and_one_byte_more_closes_1009(ws_server: DaphneServer) -> None:
    ws = await _welcomed(ws_server, await _session("alice"))
    head = '{"type":"ping"'
    at_limit = head + " " * (MAX_MESSAGE_BYTES - len(head) - 1) + "}"  # JSON whitespace pads it
    assert len(at_limit.encode()) == MAX_MESSAGE_BYTES
    await ws.send(at_limit)
    assert await recv_json(ws) == {"type": "pong"}
    await ws.send(at_limit[:-1] + " }")
    assert await _close_code(ws) == CLOSE_MESSAGE_TOO_BIG


async def test_an_oversize_binary_message_closes_1009(ws_server: DaphneServer) -> None:
    ws = await _welcomed(ws_server, await _session("alice"))
    await ws.send(b"\0" * (4 * MAX_MESSAGE_BYTES))
    assert await _close_code(ws) == CLOSE_MESSAGE_TOO_BIG


async def test_connections_over_the_per_user_limit_close_4429(ws_server: DaphneServer) -> None:
    cookie = await _session("alice")
    sockets = [await _welcomed(ws_server, cookie) for _ in range(DEFAULT_MAX_CONNECTIONS)]
    try:
        over = await open_ws(ws_server.ws_url, cookie=cookie)
        assert await _close_code(over) == CLOSE_TOO_MANY_CONNECTIONS
        bob = await _welcomed(ws_server, await _session("bob"))  # someone else is unaffected
        await bob.close()
        await sockets.pop().close()
        # The freed slot is released as soon as the server has run the connection's cleanup.
        async with asyncio.timeout(10):
            while True:
                again = await open_ws(ws_server.ws_url, cookie=cookie)
                try:
                    assert (await recv_json(again))["type"] == "welcome"
                except ConnectionClosed:
                    await asyncio.sleep(0.1)
                    continue
                sockets.append(again)
                break
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def _leave_mid_handshake(ws_url: str, cookie: str) -> None:
    """Send an upgrade request and close the socket before the server can answer it."""
    parts = urlsplit(ws_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws/ HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {page_origin(ws_url)}\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    writer.transport.abort()  # gone while the server reads the session from the database
    del reader


async def test_a_client_leaving_mid_handshake_logs_no_error(ws_server: DaphneServer) -> None:
    cookies = [await _session(f"leaver{i}") for i in range(LEAVERS)]
    start = ws_server.log_path.stat().st_size
    for cookie in cookies:  # new sessions: each handshake waits for a database read
        await _leave_mid_handshake(ws_server.ws_url, cookie)
    ws = await _welcomed(ws_server, cookies[0])  # the server took every one of them and still serves
    await _still_answers_ping(ws)
    await ws.close()
    with ws_server.log_path.open() as log:
        log.seek(start)
        written = log.read()
    assert "unhandled error" not in written
    assert "Traceback" not in written
