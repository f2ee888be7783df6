"""The /ws/ consumer: welcome, ping, whoami, bad frames, channel-layer delivery."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from shared.current_user import get_current_user
from shared.push import broadcast, push_to_user
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_user, make_users, session_key_for
from ws_service.asgi_types import Receive, Scope, Send

pytestmark = pytest.mark.django_db(transaction=True)


async def _connected(username: str = "alice") -> tuple[WebsocketCommunicator, dict[str, Any]]:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    welcome = await receive_message(communicator)
    return communicator, welcome


async def test_welcome_carries_user_and_connection_id() -> None:
    communicator, welcome = await _connected()
    assert welcome["type"] == "welcome"
    assert welcome["user"]["username"] == "alice"
    assert isinstance(welcome["connection_id"], str)
    assert len(welcome["connection_id"]) == 32
    await communicator.disconnect()


async def test_ping_pong() -> None:
    communicator, _ = await _connected()
    await send_message(communicator, {"type": "ping"})
    assert await receive_message(communicator) == {"type": "pong"}
    await communicator.disconnect()


async def test_whoami_reads_the_user_inside_orm_code() -> None:
    communicator, welcome = await _connected()
    await send_message(communicator, {"type": "whoami"})
    assert await receive_message(communicator) == {"type": "whoami", "user": welcome["user"]}
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"text_data": "{not json"}, "bad_json"),
        ({"text_data": "[" * 60_000}, "bad_json"),  # too deep to parse, yet under WS_MAX_MESSAGE_BYTES
        ({"text_data": "[1, 2]"}, "bad_message"),
        ({"text_data": '"ping"'}, "bad_message"),
        ({"text_data": "null"}, "bad_message"),
        ({"bytes_data": b'{"type": "ping"}'}, "bad_message"),
        ({"text_data": "{}"}, "bad_message"),
        ({"text_data": '{"type": 5}'}, "bad_message"),
        ({"text_data": '{"type": "launch_missiles"}'}, "unknown_type"),
    ],
)
async def test_client_mistakes_get_an_error_frame_and_the_connection_stays_open(
    frame: dict[str, Any], code: str
) -> None:
    communicator, _ = await _connected()
    await communicator.send_to(**frame)
    error = await receive_message(communicator)
    assert error["type"] == "error"
    assert error["code"] == code
    assert isinstance(error["detail"], str)
    assert error["detail"]
    await send_message(communicator, {"type": "ping"})
    assert await receive_message(communicator) == {"type": "pong"}
    await communicator.disconnect()


async def test_push_to_user_and_broadcast_reach_the_connection() -> None:
    communicator, welcome = await _connected()
    await push_to_user(welcome["user"]["id"], {"type": "notice", "text": "for alice"})
    assert await receive_message(communicator) == {"type": "notice", "text": "for alice"}
    await broadcast({"type": "notice", "text": "for everyone"})
    assert await receive_message(communicator) == {"type": "notice", "text": "for everyone"}
    await communicator.disconnect()


async def test_push_to_another_user_is_not_delivered() -> None:
    alice, _ = await _connected("alice")
    bob, bob_welcome = await _connected("bob")
    await push_to_user(bob_welcome["user"]["id"], {"type": "notice", "text": "for bob"})
    assert await receive_message(bob) == {"type": "notice", "text": "for bob"}
    assert await alice.receive_nothing(0.5)
    await alice.disconnect()
    await bob.disconnect()


async def test_concurrent_connections_each_see_only_their_own_user() -> None:
    users = await sync_to_async(make_users)("iso", 30)
    keys = [await sync_to_async(session_key_for)(user) for user in users]

    async def whoami(key: str) -> tuple[int, int]:
        communicator = ws_communicator(session_key=key)
        await communicator.connect()
        welcome = await receive_message(communicator)
        await send_message(communicator, {"type": "whoami"})
        reply = await receive_message(communicator, wait=10)
        await communicator.disconnect()
        return welcome["user"]["id"], reply["user"]["id"]

    results = await asyncio.gather(*(whoami(key) for key in keys))
    assert sorted(r[0] for r in results) == sorted(u.pk for u in users)
    assert all(welcomed == seen for welcomed, seen in results)


async def test_current_user_is_unset_after_the_connection_ends() -> None:
    from ws_service.asgi import application

    seen_after: list[object] = []

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        await application(scope, receive, send)
        seen_after.append(get_current_user())

    user = await sync_to_async(make_user)("alice")
    key = await sync_to_async(session_key_for)(user)
    headers = [(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", f"sessionid={key}".encode())]
    communicator = WebsocketCommunicator(outer, "/ws/", headers=headers)
    await communicator.connect()
    assert json.loads(await communicator.receive_from())["type"] == "welcome"
    await communicator.disconnect()
    await communicator.wait(5)
    assert seen_after == [None]


async def test_unknown_websocket_paths_are_refused() -> None:
    communicator = ws_communicator(path="/elsewhere/")
    connected, _ = await communicator.connect()
    assert connected is False


async def test_frames_are_handled_without_a_thread_hop_per_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels' dispatch runs aclose_old_connections() (a thread hop) before every handler; ours does not."""
    import channels.consumer

    calls = 0
    original = channels.consumer.aclose_old_connections

    async def counting() -> None:
        nonlocal calls
        calls += 1
        await original()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting)
    communicator, _ = await _connected()
    for _ in range(5):
        await send_message(communicator, {"type": "ping"})
        assert await receive_message(communicator) == {"type": "pong"}
    await send_message(communicator, {"type": "whoami"})  # database work still closes stale connections itself
    assert (await receive_message(communicator))["type"] == "whoami"
    await communicator.disconnect()
    assert calls == 0
