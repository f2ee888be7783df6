"""``subscribe`` with ``recent``: the newest N stored messages, bounded by ``WS_REPLAY_MAX_MESSAGES``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from pytest_django.fixtures import Settings as SettingsWrapper

from shared import messaging
from shared.current_user import use_current_user
from tests.support.communicators import connect_user, receive_message, send_message
from tests.support.protocol_schema import validate_frame

pytestmark = pytest.mark.django_db(transaction=True)


def _store(user: User, topic: str, count: int) -> list[dict[str, Any]]:
    with use_current_user(user):
        return [messaging.store_message(topic, f"m{i}") for i in range(count)]


async def _subscribe(communicator: WebsocketCommunicator, frame: dict[str, Any]) -> dict[str, Any]:
    validate_frame(frame, "client")
    await send_message(communicator, frame)
    reply = await receive_message(communicator)
    validate_frame(reply, "server")
    return reply


async def _drain(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    """Every frame but presence diffs until nothing arrives for 0.3 s (at most 200)."""
    frames: list[dict[str, Any]] = []
    for _ in range(200):
        if await communicator.receive_nothing(0.3):
            return frames
        frame = await receive_message(communicator)
        validate_frame(frame, "server")
        if frame["type"] != "presence_diff":
            frames.append(frame)
    raise AssertionError(f"the replay did not end: {frames[-3:]}")


async def test_recent_replays_the_newest_messages_oldest_first_then_live() -> None:
    alice, user, _ = await connect_user("alice")
    await sync_to_async(_store)(user, "room.recent", 10)

    reply = await _subscribe(alice, {"type": "subscribe", "topic": "room.recent", "recent": 3, "ref": "r1"})
    assert reply == {"type": "subscribed", "topic": "room.recent", "last_id": 10, "ref": "r1"}
    replay = await _drain(alice)
    assert [(f["type"], f["id"], f["text"]) for f in replay] == [
        ("message", 8, "m7"),
        ("message", 9, "m8"),
        ("message", 10, "m9"),
    ]

    live = (await sync_to_async(_store)(user, "room.recent", 1))[0]
    await messaging.deliver(live)
    assert [f["id"] for f in await _drain(alice)] == [11]
    await alice.disconnect()


async def test_recent_beyond_the_history_replays_all_of_it_and_zero_replays_nothing() -> None:
    alice, user, _ = await connect_user("alice")
    await sync_to_async(_store)(user, "room.short", 2)
    assert (await _subscribe(alice, {"type": "subscribe", "topic": "room.short", "recent": 50}))["last_id"] == 2
    assert [f["id"] for f in await _drain(alice)] == [1, 2]

    assert (await _subscribe(alice, {"type": "subscribe", "topic": "room.none", "recent": 0}))["last_id"] == 0
    assert await _drain(alice) == []
    await alice.disconnect()


async def test_recent_is_bounded_by_the_replay_cap_without_more_history(settings: SettingsWrapper) -> None:
    settings.WS_REPLAY_MAX_MESSAGES = 4
    alice, user, _ = await connect_user("alice")
    await sync_to_async(_store)(user, "room.big", 12)
    assert (await _subscribe(alice, {"type": "subscribe", "topic": "room.big", "recent": 1000}))["last_id"] == 12
    replay = await _drain(alice)
    assert [(f["type"], f.get("id")) for f in replay] == [
        ("message", 9),
        ("message", 10),
        ("message", 11),
        ("message", 12),
    ]
    await alice.disconnect()


async def test_messages_published_during_the_replay_arrive_once_in_order() -> None:
    alice, user, _ = await connect_user("alice")
    await sync_to_async(_store)(user, "room.busy", 5)

    async def publish_two() -> None:
        for payload in await sync_to_async(_store)(user, "room.busy", 2):
            await messaging.deliver(payload)

    await send_message(alice, {"type": "subscribe", "topic": "room.busy", "recent": 3})
    await publish_two()
    frames = [f for f in await _drain(alice) if f["type"] != "subscribed"]
    ids = [f["id"] for f in frames]
    # The snapshot took 5, 6 or 7 as the last id; whatever it saw, each id once, in order, up to 7.
    assert ids[0] in {3, 4, 5}, ids
    assert ids == list(range(ids[0], 8)), ids
    await alice.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe", "topic": "room.x", "recent": -1},
        {"type": "subscribe", "topic": "room.x", "recent": "3"},
        {"type": "subscribe", "topic": "room.x", "recent": True},
        {"type": "subscribe", "topic": "room.x", "recent": 1.5},
        {"type": "subscribe", "topic": "room.x", "recent": 3, "since": 0},
    ],
)
async def test_a_bad_recent_is_bad_message(frame: dict[str, Any]) -> None:
    alice, _, _ = await connect_user("alice")
    await send_message(alice, {**frame, "ref": "bad"})
    reply = await receive_message(alice)
    validate_frame(reply, "server")
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "bad_message", "bad"), reply
    assert "recent" in reply["detail"]
    await asyncio.wait_for(alice.disconnect(), 5)
