"""Unexpected errors, draining and channel-layer trouble over the full ws ASGI stack."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.contrib.auth.models import User

from shared.groups import user_group
from shared.topics import topic_group
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.consumers import ConnectionConsumer
from ws_service.node import get_node
from ws_service.protocol import CLOSE_SERVICE_RESTART
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(username: str) -> WebsocketCommunicator:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator


async def _next_of(communicator: WebsocketCommunicator, frame_type: str) -> dict[str, Any]:
    for _ in range(10):
        message = await receive_message(communicator)
        if message["type"] == frame_type:
            return message
    raise AssertionError(f"no {frame_type} frame")


@pytest.fixture
def not_draining() -> Iterator[None]:
    yield
    registry.draining = False


async def test_a_handler_exception_gives_an_internal_error_and_the_socket_lives_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: ConnectionConsumer, message: dict[str, Any]) -> None:
        raise RuntimeError("bug in a handler")

    monkeypatch.setitem(__import__("ws_service.consumers").consumers.HANDLERS, "whoami", broken)
    alice = await _connect("alice")
    with caplog.at_level(logging.ERROR, logger="ws.consumer"):
        await send_message(alice, {"type": "whoami"})
        error = await receive_message(alice)
    assert error["type"] == "error"
    assert error["code"] == "internal"
    assert [r for r in caplog.records if r.name == "ws.consumer" and r.levelname == "ERROR"]
    await send_message(alice, {"type": "ping"})
    assert await receive_message(alice) == {"type": "pong"}
    await alice.disconnect()


async def test_cleanup_runs_after_a_handler_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: ConnectionConsumer, message: dict[str, Any]) -> None:
        raise RuntimeError("bug")

    alice = await _connect("alice")
    alice_id = await sync_to_async(lambda: User.objects.get(username="alice").pk)()
    await send_message(alice, {"type": "subscribe", "topic": "room.cleanup"})
    await _next_of(alice, "subscribed")
    node = get_node()
    assert {user_group(alice_id), topic_group("room.cleanup")} <= set(node.local)
    monkeypatch.setitem(__import__("ws_service.consumers").consumers.HANDLERS, "ping", broken)
    await send_message(alice, {"type": "ping"})
    assert (await _next_of(alice, "error"))["code"] == "internal"
    await alice.disconnect()
    # The cleanup left the user's and the topic's groups (the last local member of each).
    assert not {user_group(alice_id), topic_group("room.cleanup")} & set(node.local)


async def test_a_broken_channel_layer_event_is_logged_and_ignored() -> None:
    alice = await _connect("alice")
    # A "deliver" event without a payload: the handler raises KeyError.
    from channels.layers import get_channel_layer

    from shared.groups import BROADCAST_GROUP

    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(BROADCAST_GROUP, {"type": "deliver"})
    await send_message(alice, {"type": "ping"})
    assert await receive_message(alice) == {"type": "pong"}
    await alice.disconnect()


async def test_drain_closes_with_1012_and_cleans_up(not_draining: None) -> None:
    observer = await _connect("observer")
    await send_message(observer, {"type": "subscribe", "topic": "room.drain"})
    await _next_of(observer, "subscribed")
    alice = await _connect("alice")
    await send_message(alice, {"type": "subscribe", "topic": "room.drain"})
    await _next_of(alice, "subscribed")

    draining = asyncio.ensure_future(registry.drain(grace=5))
    for communicator in (alice, observer):
        while True:
            output = await communicator.receive_output(3)
            if output["type"] == "websocket.close":
                break
        assert output["code"] == CLOSE_SERVICE_RESTART
        assert "restart" in output["reason"]
        # What the server reports once the client answers the close frame.
        await communicator.send_input({"type": "websocket.disconnect", "code": CLOSE_SERVICE_RESTART})
    assert await asyncio.wait_for(draining, 5) is True
    assert not registry.connections


async def test_while_draining_handshakes_get_1012_and_readiness_is_503(not_draining: None) -> None:
    """A late handshake is told to reconnect elsewhere (1012), not refused for good (403)."""
    from ws_service.asgi import application

    registry.draining = True
    user = await sync_to_async(make_user)("late")
    communicator = ws_communicator(session_key=await sync_to_async(session_key_for)(user))
    connected, _ = await communicator.connect()
    assert connected is True
    closing = await communicator.receive_output(3)
    assert closing == {"type": "websocket.close", "code": 1012, "reason": "server restarting, reconnect"}
    response = await HttpCommunicator(application, "GET", "/readyz").get_response(timeout=5)
    assert response["status"] == 503
    assert json.loads(response["body"])["status"] == "draining"
