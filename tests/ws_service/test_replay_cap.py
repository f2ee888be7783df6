"""Bounded work per subscribe: the replay cap (more_history) and the subscription cap."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings
from pytest_django.fixtures import Settings as SettingsWrapper

from shared import messaging
from shared.current_user import use_current_user
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.protocol_schema import validate_frame
from tests.support.users import make_user, session_key_for
from ws_service.consumers import ConnectionConsumer

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(username: str) -> tuple[WebsocketCommunicator, User]:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator, user


async def _frames_until(communicator: WebsocketCommunicator, stop: str, limit: int = 200) -> list[dict[str, Any]]:
    """Frames (presence diffs skipped) up to and including the first of type ``stop``."""
    frames: list[dict[str, Any]] = []
    for _ in range(limit):
        frame = await receive_message(communicator)
        validate_frame(frame, "server")
        if frame["type"] == "presence_diff":
            continue
        frames.append(frame)
        if frame["type"] == stop:
            return frames
    raise AssertionError(f"no {stop} within {limit} frames: {frames[-3:]}")


async def _quiet(communicator: WebsocketCommunicator) -> bool:
    """Nothing but presence diffs arrives within 0.3 s."""
    for _ in range(20):
        if await communicator.receive_nothing(0.3):
            return True
        if (await receive_message(communicator))["type"] != "presence_diff":
            return False
    return False


def _store(user: User, topic: str, count: int) -> list[dict[str, Any]]:
    with use_current_user(user):
        return [messaging.store_message(topic, f"m{i}") for i in range(count)]


async def test_replay_is_capped_and_continues_with_since_without_gaps_or_duplicates(
    settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.WS_REPLAY_MAX_MESSAGES = 4
    monkeypatch.setattr(messaging, "REPLAY_PAGE_SIZE", 3)  # pages inside the cap: 3 + 1
    alice, user = await _connect("alice")
    await sync_to_async(_store)(user, "room.capped", 11)

    await send_message(alice, {"type": "subscribe", "topic": "room.capped", "since": 0})
    first = await _frames_until(alice, "more_history")
    assert first[0] == {"type": "subscribed", "topic": "room.capped", "last_id": 11}
    assert [f["id"] for f in first[1:-1]] == [1, 2, 3, 4]
    assert first[-1] == {"type": "more_history", "topic": "room.capped", "since": 4, "last_id": 11}

    # Held: a live message is not sent ahead of the missing history.
    live = (await sync_to_async(_store)(user, "room.capped", 1))[0]
    await messaging.deliver(live)
    assert await _quiet(alice)

    received = [f["id"] for f in first if f["type"] == "message"]
    since = first[-1]["since"]
    for _ in range(5):
        ref = f"continue-{since}"
        await send_message(alice, {"type": "subscribe", "topic": "room.capped", "since": since, "ref": ref})
        part = await _frames_until(alice, "subscribed")
        assert (part[-1]["last_id"], part[-1]["ref"]) == (12, ref)
        more = await _collect_replay(alice)
        received += [f["id"] for f in more if f["type"] == "message"]
        if more[-1]["type"] != "more_history":
            break
        assert more[-1]["ref"] == ref  # the more_history ending a subscribe's replay answers it too
        since = more[-1]["since"]
    assert received == list(range(1, 13))

    # Caught up: live delivery resumes.
    nxt = (await sync_to_async(_store)(user, "room.capped", 1))[0]
    await messaging.deliver(nxt)
    assert (await _frames_until(alice, "message"))[-1]["id"] == 13
    assert await _quiet(alice)
    await alice.disconnect()


async def _collect_replay(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    """The replay after a ``subscribed``: messages, then a ``more_history`` or nothing more."""
    frames: list[dict[str, Any]] = []
    for _ in range(100):
        if await communicator.receive_nothing(0.3):
            return frames
        frame = await receive_message(communicator)
        validate_frame(frame, "server")
        if frame["type"] == "presence_diff":
            continue
        frames.append(frame)
        if frame["type"] == "more_history":
            return frames
    raise AssertionError("replay did not end")


async def test_a_replay_within_the_cap_sends_no_more_history(settings: SettingsWrapper) -> None:
    settings.WS_REPLAY_MAX_MESSAGES = 5
    alice, user = await _connect("alice")
    await sync_to_async(_store)(user, "room.small", 5)
    await send_message(alice, {"type": "subscribe", "topic": "room.small", "since": 0})
    assert (await _frames_until(alice, "subscribed"))[-1]["last_id"] == 5
    replay = await _collect_replay(alice)
    assert [f["id"] for f in replay] == [1, 2, 3, 4, 5]
    await alice.disconnect()


async def test_a_gap_fill_is_capped_too(settings: SettingsWrapper) -> None:
    settings.WS_REPLAY_MAX_MESSAGES = 3
    alice, user = await _connect("alice")
    await send_message(alice, {"type": "subscribe", "topic": "room.gap"})
    assert (await _frames_until(alice, "subscribed"))[-1]["last_id"] == 0
    stored = await sync_to_async(_store)(user, "room.gap", 8)
    await messaging.deliver(stored[-1])  # ids 1-7 never arrive live: a gap of 8
    fill = await _collect_replay(alice)
    assert [f["id"] for f in fill if f["type"] == "message"] == [1, 2, 3]
    assert fill[-1] == {"type": "more_history", "topic": "room.gap", "since": 3, "last_id": 8}
    await send_message(alice, {"type": "subscribe", "topic": "room.gap", "since": 3})
    assert (await _frames_until(alice, "subscribed"))[-1]["last_id"] == 8
    rest = await _collect_replay(alice)
    assert [f["id"] for f in rest if f["type"] == "message"] == [4, 5, 6]
    await alice.disconnect()


async def test_subscriptions_per_connection_are_capped(settings: SettingsWrapper) -> None:
    settings.WS_MAX_SUBSCRIPTIONS_PER_CONNECTION = 3
    alice, _ = await _connect("alice")
    for name in ("a", "b", "c"):
        await send_message(alice, {"type": "subscribe", "topic": f"room.{name}"})
        assert (await _frames_until(alice, "subscribed"))[-1]["topic"] == f"room.{name}"
    await send_message(alice, {"type": "subscribe", "topic": "room.d", "ref": "r4"})
    error = (await _frames_until(alice, "error"))[-1]
    assert error["code"] == "too_many_subscriptions"
    assert error["ref"] == "r4"
    # Subscribing again to a followed topic is allowed; after an unsubscribe there is room.
    await send_message(alice, {"type": "subscribe", "topic": "room.a"})
    assert (await _frames_until(alice, "subscribed"))[-1]["topic"] == "room.a"
    await send_message(alice, {"type": "unsubscribe", "topic": "room.b"})
    assert (await _frames_until(alice, "unsubscribed"))[-1]["topic"] == "room.b"
    await send_message(alice, {"type": "subscribe", "topic": "room.d"})
    assert (await _frames_until(alice, "subscribed"))[-1]["topic"] == "room.d"
    await alice.disconnect()


async def test_a_full_event_queue_warns_once_per_overflow(caplog: pytest.LogCaptureFixture) -> None:
    consumer = ConnectionConsumer()
    with override_settings(CHANNEL_LAYER_CAPACITY=4), caplog.at_level("WARNING", logger="ws.consumer"):
        for n in range(50):
            consumer.deliver_local({"type": "topic.message", "n": n})
        assert consumer.pending is not None
        assert len(consumer.pending) == 4
        assert len([r for r in caplog.records if "queue full" in r.message]) == 1
        for _ in range(3):  # drained below half: the next overflow warns again
            consumer.pending.popleft()
        for n in range(10):
            consumer.deliver_local({"type": "topic.message", "n": n})
    assert len([r for r in caplog.records if "queue full" in r.message]) == 2


def test_a_revocation_is_queued_even_when_the_event_queue_is_full() -> None:
    consumer = ConnectionConsumer()
    with override_settings(CHANNEL_LAYER_CAPACITY=2):
        for n in range(5):
            consumer.deliver_local({"type": "topic.message", "n": n})
        consumer.deliver_local({"type": "auth.revoked", "reason": "logout"})
    assert consumer.pending is not None
    assert len(consumer.pending) == 3
    assert [event["type"] for event in consumer.pending][-1] == "auth.revoked"
