"""The presence feature over the full ws ASGI stack: the ``presence`` request and ``presence_diff`` frames."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from tests.support.communicators import connect_user, receive_message, request, ws_communicator

pytestmark = pytest.mark.django_db(transaction=True)


async def _subscribe(communicator: WebsocketCommunicator, topic: str) -> dict[str, Any]:
    reply = await request(communicator, {"type": "subscribe", "topic": topic})
    assert reply["type"] == "subscribed", reply
    return reply


async def _next_of(communicator: WebsocketCommunicator, frame_type: str, wait: float = 3) -> dict[str, Any]:
    """The next frame of ``frame_type``, skipping others."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        message = await receive_message(communicator, wait=max(remaining, 0.01))
        if message["type"] == frame_type:
            return message


async def test_presence_of_a_bad_or_private_topic_is_an_error() -> None:
    alice, alice_user, _ = await connect_user("alice")
    bob, _, _ = await connect_user("bob")
    assert (await request(alice, {"type": "presence", "topic": "nope"}))["code"] == "bad_topic"
    assert (await request(bob, {"type": "presence", "topic": f"user.{alice_user.pk}"}))["code"] == "forbidden"
    await alice.disconnect()
    await bob.disconnect()


async def test_presence_lists_users_and_diffs_joins_and_leaves() -> None:
    alice, alice_user, _ = await connect_user("alice")
    await _subscribe(alice, "room.p")
    assert (await _next_of(alice, "presence_diff"))["joined"] == [{"id": alice_user.pk, "username": "alice"}]
    bob, bob_user, _ = await connect_user("bob")
    await _subscribe(bob, "room.p")
    joined = await _next_of(alice, "presence_diff")
    assert joined["joined"] == [{"id": bob_user.pk, "username": "bob"}]
    assert joined["left"] == []
    reply = await request(alice, {"type": "presence", "topic": "room.p"})
    assert reply == {
        "type": "presence",
        "topic": "room.p",
        "users": [{"id": alice_user.pk, "username": "alice"}, {"id": bob_user.pk, "username": "bob"}],
    }
    await bob.disconnect()
    left = await _next_of(alice, "presence_diff")
    assert left["left"] == [{"id": bob_user.pk, "username": "bob"}]
    reply = await request(alice, {"type": "presence", "topic": "room.p"})
    assert [u["username"] for u in reply["users"]] == ["alice"]
    await alice.disconnect()


async def test_second_connection_of_a_user_does_not_rejoin() -> None:
    alice, _alice_user, key = await connect_user("alice")
    await _subscribe(alice, "room.twice")
    await _next_of(alice, "presence_diff")
    again = ws_communicator(session_key=key)
    await again.connect()
    await receive_message(again)
    await _subscribe(again, "room.twice")
    assert await alice.receive_nothing(0.5)  # no second "joined" for the same user
    await again.disconnect()
    assert await alice.receive_nothing(0.5)  # and no "left": alice is still here
    await alice.disconnect()
