"""A user's own consumer on another path gets the kernel's transport behaviour by subclassing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.urls import path

from shared.current_user import get_current_user_id
from shared.groups import user_group
from shared.log_context import context_id, get_context_id
from tests.support.communicators import ALLOWED_ORIGIN, receive_message, send_message
from tests.support.users import make_user, session_key_for
from ws_service.auth import TicketOrSessionAuthMiddleware
from ws_service.connection_context import ConnectionContextMiddleware
from ws_service.frames import FrameRegistry
from ws_service.kernel import KernelConsumer
from ws_service.loop_local import process_task
from ws_service.node import get_node
from ws_service.protocol import CLOSE_SERVICE_RESTART, CLOSE_UNAUTHENTICATED
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)

SHOUTS = "shouts"


class ShoutConsumer(KernelConsumer):
    """A chat of shouts on /shout/: its own message types, a Channels ``groups`` list and an event method."""

    frames: ClassVar[FrameRegistry] = FrameRegistry()
    groups: ClassVar[list[str]] = [SHOUTS]

    async def shout_message(self, event: dict[str, Any]) -> None:
        await self.send_message({"type": "shout", "text": event["text"], "by": event["by"]})

    async def whose_context(self, event: dict[str, Any]) -> None:
        """Reports who the ContextVars say is handling this event (what every log record says)."""
        await self.send_message({"type": "context", "user_id": get_current_user_id(), "context_id": get_context_id()})


async def on_shout(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    text = str(message.get("text", ""))
    if text == "boom":
        raise RuntimeError("a bug in the user's handler")
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(SHOUTS, {"type": "shout.message", "text": text.upper(), "by": consumer.user.username})


ShoutConsumer.frames.request("shout", on_shout)
ShoutConsumer.frames.sends("shout")
ShoutConsumer.frames.sends("context")

application = ConnectionContextMiddleware(
    TicketOrSessionAuthMiddleware(URLRouter([path("shout/", ShoutConsumer.as_asgi())]))
)


def _communicator(session_key: str | None) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost:8000"), (b"origin", ALLOWED_ORIGIN.encode())]
    if session_key is not None:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))
    return WebsocketCommunicator(application, "/shout/", headers=headers)


async def _connect(username: str) -> WebsocketCommunicator:
    user = await sync_to_async(make_user)(username)
    communicator = _communicator(await sync_to_async(session_key_for)(user))
    connected, _ = await communicator.connect()
    assert connected
    welcome = await receive_message(communicator)
    assert welcome["type"] == "welcome"
    assert welcome["user"]["username"] == username
    return communicator


async def _close_code(communicator: WebsocketCommunicator) -> int:
    for _ in range(10):
        output = await communicator.receive_output(3)
        if output["type"] == "websocket.close":
            code: int = output["code"]
            return code
    raise AssertionError("no close")


@pytest.fixture
def not_draining() -> Iterator[None]:
    yield
    registry.draining = False


async def test_an_anonymous_handshake_is_closed_with_4401() -> None:
    communicator = _communicator(None)
    connected, _ = await communicator.connect()
    assert connected
    assert await _close_code(communicator) == CLOSE_UNAUTHENTICATED


async def test_own_types_and_events_reach_every_member_through_the_node() -> None:
    alice, bob = await _connect("alice"), await _connect("bob")
    assert SHOUTS in get_node().local  # the class's groups, joined once for the process
    await send_message(alice, {"type": "shout", "text": "hello"})
    for communicator in (alice, bob):
        assert await receive_message(communicator) == {"type": "shout", "text": "HELLO", "by": "alice"}
    # The /ws/ features are not on this path: their types are unknown here.
    await send_message(alice, {"type": "subscribe", "topic": "room.a", "ref": "r1"})
    error = await receive_message(alice)
    assert (error["code"], error["ref"]) == ("unknown_type", "r1")
    await send_message(alice, {"type": "shout", "text": "boom", "ref": "b1"})
    error = await receive_message(alice)  # a bug: an error frame echoing the request's ref, the socket lives on
    assert (error["code"], error.get("ref")) == ("internal", "b1")
    await send_message(alice, {"type": "shout", "text": "still here"})
    assert (await receive_message(alice))["text"] == "STILL HERE"
    await alice.disconnect()
    await bob.disconnect()
    assert SHOUTS not in get_node().local  # the last member left the group


async def test_revocation_closes_with_4401_and_drain_with_1012(not_draining: None) -> None:
    alice, bob = await _connect("alice"), await _connect("bob")
    layer = get_channel_layer()
    assert layer is not None
    alice_id = await sync_to_async(lambda: User.objects.get(username="alice").pk)()
    await layer.group_send(user_group(alice_id), {"type": "auth.revoked", "reason": "logged out"})
    assert await _close_code(alice) == CLOSE_UNAUTHENTICATED
    await alice.send_input({"type": "websocket.disconnect", "code": CLOSE_UNAUTHENTICATED})
    draining = asyncio.ensure_future(registry.drain(grace=5))
    assert await _close_code(bob) == CLOSE_SERVICE_RESTART
    await bob.send_input({"type": "websocket.disconnect", "code": CLOSE_SERVICE_RESTART})
    assert await asyncio.wait_for(draining, 5) is True


async def test_an_event_handler_runs_with_its_own_connections_user_and_id() -> None:
    """Not with those of the connection that happened to start the node's task (the first to join)."""
    first, second = await _connect("first"), await _connect("second")
    layer = get_channel_layer()
    assert layer is not None
    seen: dict[str, str] = {}
    for name, communicator in (("first", first), ("second", second)):
        user_id = await sync_to_async(lambda n=name: User.objects.get(username=n).pk)()
        await layer.group_send(user_group(user_id), {"type": "whose.context"})
        reply = await receive_message(communicator)
        assert reply["user_id"] == user_id, (name, reply)
        seen[name] = reply["context_id"]
    assert seen["first"]
    assert seen["second"]
    assert seen["first"] != seen["second"]
    await first.disconnect()
    await second.disconnect()


async def _context_id_seen() -> str | None:
    return get_context_id()


async def test_a_process_task_does_not_inherit_the_identity_of_the_connection_that_started_it() -> None:
    token = context_id.set("connection-that-came-first")
    try:
        task = process_task(_context_id_seen(), "probe")
        inherited = asyncio.create_task(_context_id_seen())
    finally:
        context_id.reset(token)
    assert await inherited == "connection-that-came-first"  # what asyncio.create_task alone would do
    assert not await task


class RawConsumer(ShoutConsumer):
    """Overrides Channels' ``websocket_receive``: its own frames, answered without the kernel's parsing."""

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if message.get("text") == "raw":
            await self.send_encoded('{"type":"raw"}', "raw")
            return
        await super().websocket_receive(message)


raw_application = ConnectionContextMiddleware(
    TicketOrSessionAuthMiddleware(URLRouter([path("raw/", RawConsumer.as_asgi())]))
)


async def test_a_subclass_overriding_websocket_receive_gets_every_client_frame() -> None:
    assert KernelConsumer.receives_frames
    assert ShoutConsumer.receives_frames
    assert not RawConsumer.receives_frames
    user = await sync_to_async(make_user)("raw")
    headers = [(b"host", b"localhost:8000"), (b"origin", ALLOWED_ORIGIN.encode())]
    headers.append((b"cookie", f"sessionid={await sync_to_async(session_key_for)(user)}".encode()))
    communicator = WebsocketCommunicator(raw_application, "/raw/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    await communicator.send_to(text_data="raw")
    assert await receive_message(communicator) == {"type": "raw"}
    await send_message(communicator, {"type": "shout-not", "ref": "r"})
    assert (await receive_message(communicator))["code"] == "unknown_type"
    await communicator.disconnect()
