"""On real Uvicorn (websockets-sansio, in this process): frames go straight to the socket.

A topic message is framed once per process: every local subscriber gets the
same bytes, written to its socket directly (``ws_service.direct_frames``), and
so is every reply; a connection that is not plainly open (here:
one whose client has started the closing handshake) gets nothing written
directly and goes through Uvicorn's own ``send``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from asgiref.sync import sync_to_async
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode

from shared import messaging
from shared.current_user import use_current_user
from tests.support.live import open_ws, recv_type
from tests.support.servers import free_port
from tests.support.users import make_user, session_key_for
from ws_service import direct_frames, output_budget
from ws_service.kernel import KernelConsumer
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBERS = 4
TOPIC = "room.direct"


@pytest.fixture
async def uvicorn_url() -> AsyncIterator[str]:
    """The ws application under Uvicorn in this event loop, configured as the launcher does."""
    from ws_service.asgi import application

    output_budget.install_uvicorn()
    port = free_port()
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        ws="websockets-sansio",
        lifespan="off",
        ws_per_message_deflate=False,
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # at most 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    yield f"ws://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(task, 15)


async def _subscriber(url: str, key: str) -> ClientConnection:
    ws = await open_ws(url, cookie=f"sessionid={key}")
    assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
    await ws.send(json.dumps({"type": "subscribe", "topic": TOPIC}))
    for _ in range(5):
        if json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "subscribed":
            return ws
    raise AssertionError("no subscribed frame")


def _publish(user: Any, text: str) -> dict[str, Any]:
    with use_current_user(user):
        return messaging.store_message(TOPIC, text)


async def test_a_topic_message_is_framed_once_for_every_local_subscriber(
    uvicorn_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sync_to_async(make_user)("direct")
    key = await sync_to_async(session_key_for)(user)
    sockets = [await _subscriber(uvicorn_url, key) for _ in range(SUBSCRIBERS)]
    tag = "framed-once-7f3a"
    framed: list[str] = []
    build = direct_frames.text_frame

    def counting_text_frame(text: str) -> bytes:
        if tag in text:
            framed.append(text)
        return build(text)

    monkeypatch.setattr(direct_frames, "text_frame", counting_text_frame)
    payload = await sync_to_async(_publish)(user, tag)
    await messaging.deliver(payload)
    for ws in sockets:
        assert await recv_type(ws, "message") == payload
    assert len(framed) == 1  # one frame built for the process, not one per subscriber
    for ws in sockets:
        await ws.close()


async def test_only_an_open_connection_is_written_to_directly(uvicorn_url: str) -> None:
    user = await sync_to_async(make_user)("closing")
    key = await sync_to_async(session_key_for)(user)
    ws = await _subscriber(uvicorn_url, key)
    protocol = direct_frames.direct_protocol(_consumer_of(user).base_send)
    assert protocol is not None
    assert direct_frames.write_frame(protocol, direct_frames.text_frame('{"type":"pong","ref":"direct"}'))
    assert await recv_type(ws, "pong") == {"type": "pong", "ref": "direct"}
    await ws.close()
    for _ in range(100):  # at most 5 s
        if protocol.disconnected:
            break
        await asyncio.sleep(0.05)
    assert protocol.disconnected
    assert not direct_frames.write_frame(protocol, direct_frames.text_frame('{"type":"pong","ref":"late"}'))


async def test_a_reply_goes_straight_to_the_socket_not_through_uvicorns_send(
    uvicorn_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await sync_to_async(make_user)("replied")
    key = await sync_to_async(session_key_for)(user)
    through_send: list[dict[str, Any]] = []
    send = WebSocketsSansIOProtocol.send

    async def recording_send(protocol: Any, message: Any) -> None:
        through_send.append(message)
        await send(protocol, message)

    monkeypatch.setattr(WebSocketsSansIOProtocol, "send", recording_send)  # before the connection takes its bound send
    ws = await open_ws(uvicorn_url, cookie=f"sessionid={key}")
    assert await recv_type(ws, "welcome")
    assert [m["type"] for m in through_send] == ["websocket.accept"]  # the welcome went straight to the socket
    for n in range(3):
        await ws.send(json.dumps({"type": "ping", "ref": f"r{n}"}))
        assert await recv_type(ws, "pong") == {"type": "pong", "ref": f"r{n}"}
    await ws.send("not json")
    assert (await recv_type(ws, "error"))["code"] == "bad_json"
    assert [m for m in through_send if m["type"] == "websocket.send"] == []
    await ws.close()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_what_websockets_serializes(size: int) -> None:
    text = ("é" + "a" * size)[: max(size - 1, 0)] if size else ""
    expected = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
    assert direct_frames.text_frame(text) == expected


def _consumer_of(user: Any) -> KernelConsumer:
    [consumer] = [c for c in registry.connections if isinstance(c, KernelConsumer) and c.user.pk == user.pk]
    return consumer


def test_other_servers_sends_are_not_written_to_directly() -> None:
    async def send(message: dict[str, Any]) -> None:
        """An ASGI send that is no Uvicorn protocol's (Daphne's, a test communicator's)."""

    assert direct_frames.direct_protocol(send) is None
