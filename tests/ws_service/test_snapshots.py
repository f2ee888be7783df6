"""Subscribe snapshots: one read per batch of concurrent subscribers of a topic, each answered correctly."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import DatabaseError, connection

from shared import messaging
from shared.current_user import use_current_user
from tests.support.communicators import connect_user, request
from ws_service import snapshots
from ws_service.snapshots import get_reader

pytestmark = pytest.mark.django_db(transaction=True)


def _store_sync(topic: str, texts: list[str]) -> None:
    author, _ = User.objects.get_or_create(username=f"author-{topic}")
    with use_current_user(author):
        for text in texts:
            messaging.store_message(topic, text)


def _store_in_other_thread(topic: str, text: str) -> None:
    """Store while the ORM thread is busy with the held read (its own connection, closed after)."""
    try:
        _store_sync(topic, [text])
    finally:
        connection.close()


async def _store(topic: str, count: int) -> None:
    await sync_to_async(_store_sync)(topic, [f"m{number}" for number in range(count)])


async def test_concurrent_subscribers_share_reads_and_each_gets_its_own_replay() -> None:
    topic = "room.storm"
    await _store(topic, 12)
    reader = get_reader()
    sinces: list[int | None] = [None, 0, 3, 3, 7, 11, 12, None, 5, 0] * 3
    before = reader.reads
    results = await asyncio.gather(*(reader.snapshot(topic, since) for since in sinces))
    assert reader.reads - before <= 2, "30 concurrent subscribers should share at most two reads"
    for since, (last, page) in zip(sinces, results, strict=True):
        assert last == 12
        expected = [] if since is None else list(range(since + 1, 13))
        assert [message["id"] for message in page] == expected, since


async def test_a_read_already_running_never_answers_a_later_subscriber(monkeypatch: pytest.MonkeyPatch) -> None:
    """A subscriber asking during a read gets the next read: it sees what was published meanwhile."""
    topic = "room.inflight"
    await _store(topic, 1)
    started, release = threading.Event(), threading.Event()
    original = snapshots.read_snapshots

    def slow_first_read(name: str, asks: set[snapshots.Ask]) -> dict[snapshots.Ask, snapshots.Snapshot]:
        result = original(name, asks)
        if not started.is_set():
            started.set()
            assert release.wait(10)
        return result

    monkeypatch.setattr(snapshots, "read_snapshots", slow_first_read)
    reader = get_reader()
    first = asyncio.ensure_future(reader.snapshot(topic, 0))
    assert await asyncio.to_thread(started.wait, 10)
    await sync_to_async(_store_in_other_thread, thread_sensitive=False)(topic, "meanwhile")
    second = asyncio.ensure_future(reader.snapshot(topic, 0))
    await asyncio.sleep(0.05)
    release.set()
    assert (await first)[0] == 1
    last, page = await second
    assert last == 2
    assert [message["text"] for message in page] == ["m0", "meanwhile"]


async def test_a_failed_read_fails_every_waiter_and_the_next_read_works(monkeypatch: pytest.MonkeyPatch) -> None:
    topic = "room.flaky"
    calls: list[int] = []
    original = snapshots.read_snapshots

    def fail_once(name: str, asks: set[snapshots.Ask]) -> dict[snapshots.Ask, snapshots.Snapshot]:
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseError("down")
        return original(name, asks)

    monkeypatch.setattr(snapshots, "read_snapshots", fail_once)
    reader = get_reader()
    failed = await asyncio.gather(*(reader.snapshot(topic, None) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(result, DatabaseError) for result in failed)
    assert await reader.snapshot(topic, None) == (0, [])


async def test_concurrent_subscribe_frames_over_the_stack_get_correct_replays() -> None:
    topic = "room.crowd"
    await _store(topic, 5)
    users = [await connect_user(f"user{number}") for number in range(8)]
    sinces = [0, 2, 4, 5, 0, 2, 4, 5]

    async def subscribe(communicator: Any, since: int) -> list[dict[str, Any]]:
        reply = await request(communicator, {"type": "subscribe", "topic": topic, "since": since})
        assert reply == {"type": "subscribed", "topic": topic, "last_id": 5}
        replayed: list[dict[str, Any]] = []
        for _ in range(50):  # presence diffs of the others may come in between
            if len(replayed) == 5 - since:
                break
            frame = await communicator.receive_json_from(5)
            if frame["type"] == "message":
                replayed.append(frame)
        return replayed

    replays = await asyncio.gather(*(subscribe(c, s) for (c, _, _), s in zip(users, sinces, strict=True)))
    for since, replayed in zip(sinces, replays, strict=True):
        assert [message["id"] for message in replayed] == list(range(since + 1, 6))
    for communicator, _, _ in users:
        await communicator.disconnect()
