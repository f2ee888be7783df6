"""Topics over the full ws ASGI stack: subscribe, replay, publish, revocation.

Frames of optional features pushed to subscribers (``presence_diff``) are
skipped, so these tests hold with or without those features.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.db import connection, transaction

from shared import messaging
from shared.current_user import use_current_user
from shared.revocation import revoke_session
from tests.support.communicators import connect_user, receive_message, request, send_message
from tests.support.users import make_user
from ws_service.protocol import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)


async def _subscribe(communicator: WebsocketCommunicator, topic: str, since: int | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "subscribe", "topic": topic}
    if since is not None:
        message["since"] = since
    reply = await request(communicator, message)
    assert reply["type"] == "subscribed", reply
    return reply


async def _next_of(communicator: WebsocketCommunicator, frame_type: str, wait: float = 3) -> dict[str, Any]:
    """The next frame of ``frame_type``, skipping others (e.g. presence diffs)."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        message = await receive_message(communicator, wait=max(remaining, 0.01))
        if message["type"] == frame_type:
            return message


async def _quiet(communicator: WebsocketCommunicator, wait: float = 0.3) -> bool:
    """Nothing but presence diffs arrives until ``wait`` seconds pass without a frame."""
    for _ in range(20):
        if await communicator.receive_nothing(wait):
            return True
        if (await receive_message(communicator))["type"] != "presence_diff":
            return False
    return False


async def test_publish_is_stored_acked_and_delivered_with_increasing_ids() -> None:
    alice, alice_user, _ = await connect_user("alice")
    assert (await _subscribe(alice, "room.lobby"))["last_id"] == 0
    for expected_id, text in enumerate(["one", "two", "three"], start=1):
        await send_message(alice, {"type": "publish", "topic": "room.lobby", "text": text, "ref": f"r{expected_id}"})
        ack = await _next_of(alice, "ack")
        assert ack == {"type": "ack", "topic": "room.lobby", "id": expected_id, "ref": f"r{expected_id}"}
        message = await _next_of(alice, "message")
        assert message["id"] == expected_id
        assert message["text"] == text
        assert message["author"] == {"id": alice_user.pk, "username": "alice"}
        assert message["created_at"].endswith("+00:00")
    await alice.disconnect()


async def test_author_comes_from_the_connection_never_from_the_message() -> None:
    alice, alice_user, _ = await connect_user("alice")
    await sync_to_async(make_user)("mallory")
    await _subscribe(alice, "room.lobby")
    forged = {"type": "publish", "topic": "room.lobby", "text": "hi", "author": {"id": 999, "username": "mallory"}}
    await send_message(alice, forged)
    message = await _next_of(alice, "message")
    assert message["author"]["id"] == alice_user.pk
    await alice.disconnect()


async def test_subscribe_since_replays_exactly_what_was_missed_in_order() -> None:
    alice, _, _ = await connect_user("alice")
    for i in range(5):
        await send_message(alice, {"type": "publish", "topic": "room.history", "text": f"m{i + 1}"})
        await _next_of(alice, "ack")
    bob, _, _ = await connect_user("bob")
    subscribed = await _subscribe(bob, "room.history", since=2)
    assert subscribed["last_id"] == 5
    replay = [await receive_message(bob) for _ in range(3)]
    assert [m["id"] for m in replay] == [3, 4, 5]
    assert [m["text"] for m in replay] == ["m3", "m4", "m5"]
    assert await _quiet(bob)
    await alice.disconnect()
    await bob.disconnect()


async def test_subscribe_without_since_replays_nothing() -> None:
    alice, _, _ = await connect_user("alice")
    await send_message(alice, {"type": "publish", "topic": "room.quiet", "text": "before"})
    await _next_of(alice, "ack")
    assert (await _subscribe(alice, "room.quiet"))["last_id"] == 1
    assert await _quiet(alice)
    await alice.disconnect()


async def test_out_of_order_delivery_is_reordered_and_deduplicated() -> None:
    alice, alice_user, _ = await connect_user("alice")
    await _subscribe(alice, "room.order")
    assert await _quiet(alice)  # nothing else is pending after the subscribe

    def store(text: str) -> dict[str, Any]:
        with use_current_user(alice_user):
            return messaging.store_message("room.order", text)

    first = await sync_to_async(store)("first")
    second = await sync_to_async(store)("second")
    await messaging.deliver(second)  # arrives before the first: a gap
    got = [await _next_of(alice, "message"), await _next_of(alice, "message")]
    assert [m["id"] for m in got] == [first["id"], second["id"]]
    await messaging.deliver(first)  # late duplicate
    await messaging.deliver(second)
    assert await alice.receive_nothing(0.5)
    await alice.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "subscribe", "topic": "lobby"}, "bad_topic"),
        ({"type": "subscribe", "topic": "room.UPPER"}, "bad_topic"),
        ({"type": "subscribe", "topic": "room." + "a" * 65}, "bad_topic"),
        ({"type": "subscribe"}, "bad_topic"),
        ({"type": "subscribe", "topic": "room.x", "since": -1}, "bad_message"),
        ({"type": "subscribe", "topic": "room.x", "since": "3"}, "bad_message"),
        ({"type": "subscribe", "topic": "room.x", "since": True}, "bad_message"),
        ({"type": "publish", "topic": "room.x"}, "bad_message"),
        ({"type": "publish", "topic": "room.x", "text": "   "}, "bad_message"),
        ({"type": "publish", "topic": "room.x", "text": "x" * 4001}, "bad_message"),
        ({"type": "publish", "topic": "room.x", "text": "hi", "ref": 5}, "bad_message"),
        ({"type": "unsubscribe", "topic": "room.never"}, "not_subscribed"),
    ],
)
async def test_bad_topic_frames_get_error_codes(frame: dict[str, Any], code: str) -> None:
    alice, _, _ = await connect_user("alice")
    reply = await request(alice, frame)
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert (await request(alice, {"type": "ping"})) == {"type": "pong"}
    await alice.disconnect()


async def test_user_topics_are_private() -> None:
    alice, alice_user, _ = await connect_user("alice")
    bob, _bob_user, _ = await connect_user("bob")
    assert (await _subscribe(alice, f"user.{alice_user.pk}"))["topic"] == f"user.{alice_user.pk}"
    for frame_type in ("subscribe", "publish"):
        reply = await request(bob, {"type": frame_type, "topic": f"user.{alice_user.pk}", "text": "x"})
        assert reply["type"] == "error"
        assert reply["code"] == "forbidden", frame_type
    await alice.disconnect()
    await bob.disconnect()


async def test_unsubscribe_stops_delivery() -> None:
    alice, _, _ = await connect_user("alice")
    bob, _, _ = await connect_user("bob")
    await _subscribe(alice, "room.u")
    assert await _quiet(alice)
    assert await request(alice, {"type": "unsubscribe", "topic": "room.u"}) == {
        "type": "unsubscribed",
        "topic": "room.u",
    }
    await send_message(bob, {"type": "publish", "topic": "room.u", "text": "after"})
    await _next_of(bob, "ack")
    assert await alice.receive_nothing(0.5)
    await alice.disconnect()
    await bob.disconnect()


async def _closed_code(communicator: WebsocketCommunicator) -> int:
    while True:
        output = await communicator.receive_output(3)
        if output["type"] == "websocket.close":
            code: int = output["code"]
            return code


async def test_revoking_the_session_closes_its_sockets_with_4401() -> None:
    alice, _, key = await connect_user("alice")
    await sync_to_async(revoke_session)(key)
    assert await _closed_code(alice) == CLOSE_UNAUTHENTICATED


async def test_deleting_the_session_closes_its_sockets() -> None:
    alice, _, key = await connect_user("alice")
    await sync_to_async(lambda: Session.objects.get(session_key=key).delete())()
    assert await _closed_code(alice) == CLOSE_UNAUTHENTICATED


async def test_a_session_delete_that_is_rolled_back_closes_no_socket() -> None:
    alice, _, key = await connect_user("alice")

    def delete_then_roll_back() -> None:
        with contextlib.suppress(RuntimeError), transaction.atomic():
            Session.objects.get(session_key=key).delete()
            raise RuntimeError("roll back")

    await sync_to_async(delete_then_roll_back)()
    assert await sync_to_async(Session.objects.filter(session_key=key).exists)()
    assert await alice.receive_nothing(0.5)


async def test_a_session_deleted_in_a_transaction_closes_its_sockets_after_the_commit() -> None:
    alice, _, key = await connect_user("alice")
    in_transaction = threading.Event()
    commit = threading.Event()

    def delete_and_wait_for_commit() -> None:
        try:
            with transaction.atomic():
                Session.objects.get(session_key=key).delete()
                in_transaction.set()
                commit.wait(5)
        finally:
            connection.close()  # this thread's own connection

    deleting = asyncio.ensure_future(sync_to_async(delete_and_wait_for_commit, thread_sensitive=False)())
    await asyncio.to_thread(in_transaction.wait, 5)
    assert await alice.receive_nothing(0.3)  # not before the commit
    commit.set()
    await deleting
    assert await _closed_code(alice) == CLOSE_UNAUTHENTICATED


async def test_password_change_closes_every_socket_of_the_user() -> None:
    alice, alice_user, _ = await connect_user("alice")

    def change() -> None:
        alice_user.set_password("another-password-9876")
        alice_user.save()

    await sync_to_async(change)()
    assert await _closed_code(alice) == CLOSE_UNAUTHENTICATED


async def test_other_saves_of_the_user_do_not_close_sockets() -> None:
    alice, alice_user, _ = await connect_user("alice")

    def rename() -> None:
        alice_user.first_name = "Alice"
        alice_user.save()

    await sync_to_async(rename)()
    assert await alice.receive_nothing(0.5)
    await alice.disconnect()


async def test_error_frames_echo_the_requests_ref() -> None:
    alice, _, _ = await connect_user("alice")
    reply = await request(alice, {"type": "publish", "topic": "nope", "text": "x", "ref": "req-7"})
    assert reply == {"type": "error", "code": "bad_topic", "detail": reply["detail"], "ref": "req-7"}
    assert "ref" not in await request(alice, {"type": "publish", "topic": "nope", "ref": 5})
    await alice.disconnect()


async def test_long_replays_are_sent_page_by_page_without_gaps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messaging, "REPLAY_PAGE_SIZE", 4)
    alice, alice_user, _ = await connect_user("alice")

    def store_many() -> None:
        with use_current_user(alice_user):
            for i in range(11):
                messaging.store_message("room.long", f"m{i + 1}")

    await sync_to_async(store_many)()
    assert (await _subscribe(alice, "room.long", since=1))["last_id"] == 11
    replay = [await _next_of(alice, "message") for _ in range(10)]
    assert [m["id"] for m in replay] == list(range(2, 12))
    await alice.disconnect()
