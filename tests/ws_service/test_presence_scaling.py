"""Presence that scales with the room (issue #12, items 2 and 3).

Bookkeeping is refreshed per process in a constant number of Redis round
trips, diffs are batched per topic per interval, large topics get none, and
``presence`` replies are paged to fit the outbound frame limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from pytest_django.fixtures import Settings as SettingsWrapper

from shared import presence
from shared.presence import Change, PresenceEntry
from shared.redis_client import _clients, get_redis
from shared.topics import topic_group
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_users, session_key_for
from ws_service.connection_slots import REFRESH_BATCH, Slot, SlotTracker, open_connections
from ws_service.presence_frames import diff_frames
from ws_service.presence_tracker import PresenceTracker
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)


class CountingConnection(redis.Connection):
    """A real connection that counts what it writes to the socket: one write is one round trip."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).writes += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counted_redis(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[type[CountingConnection]]:
    """This loop's data-Redis client, swapped for one whose connections count their round trips."""
    pool = redis.ConnectionPool.from_url(
        django_settings.REDIS_URL, connection_class=CountingConnection, decode_responses=True
    )
    client = redis.Redis.from_pool(pool)
    monkeypatch.setitem(_clients, asyncio.get_running_loop(), client)
    yield CountingConnection
    await client.aclose()


async def _round_trips(counter: type[CountingConnection], step: Any) -> int:
    before = counter.writes
    await step()
    return counter.writes - before


@pytest.mark.parametrize("connections", [3, REFRESH_BATCH * 2 + 7])
async def test_slot_refresh_is_one_round_trip_whatever_the_number_of_connections(
    counted_redis: type[CountingConnection], connections: int
) -> None:
    tracker = SlotTracker()
    slots = [Slot(990_000 + i, f"refresh{i}") for i in range(connections)]
    for slot in slots:
        assert await tracker.acquire(slot, 1)
    before = await get_redis().zscore(slots[-1].key, slots[-1].connection_id)
    await get_redis().delete(slots[0].key)  # Redis lost this one: the round puts it back
    await asyncio.sleep(0.01)
    assert await _round_trips(counted_redis, tracker.tick) == 1
    after = await get_redis().zscore(slots[-1].key, slots[-1].connection_id)
    assert after is not None
    assert before is not None
    assert after > before
    assert await open_connections(slots[0].user_id) == 1
    assert await get_redis().ttl(slots[-1].key) > 0
    for slot in slots:
        await tracker.release(slot)
    assert await open_connections(slots[-1].user_id) == 0


@pytest.mark.parametrize("connections", [3, presence.REFRESH_BATCH * 2 + 7])
async def test_presence_round_is_a_constant_number_of_round_trips(
    counted_redis: type[CountingConnection], connections: int
) -> None:
    tracker = PresenceTracker()
    entries = [PresenceEntry(f"room.scale-{i % 3}", f"pconn{i}", 980_000 + i, f"u{i}") for i in range(connections)]
    for entry in entries:
        await presence.join(entry)  # no diffs: this test is about the refresh
    tracker.entries.update(entries)
    # One refresh pipeline, one that finds the due topics, one that sweeps them (if any are due).
    assert await _round_trips(counted_redis, tracker.tick) <= 3
    assert len(await presence.users("room.scale-0")) == len(entries[0::3])
    for entry in entries:
        await presence.leave(entry)


async def test_refresh_puts_back_entries_redis_lost_and_reports_them_joined() -> None:
    entries = [PresenceEntry("room.lost", f"lost{i}", 970_000 + i, f"lost{i}") for i in range(3)]
    for entry in entries:
        await presence.join(entry)
    await get_redis().delete(*presence._keys("room.lost")[:2])
    changes = await presence.refresh_all(entries)
    assert [(c.topic, c.size, sorted(u["id"] for u in c.joined)) for c in changes] == [
        ("room.lost", 3, [e.user_id for e in entries])
    ]
    assert await presence.refresh_all(entries) == [presence.Change("room.lost", 3)]  # nothing lost now
    for entry in entries:
        await presence.leave(entry)
    await get_redis().aclose()


async def _connect_many(prefix: str, count: int) -> list[WebsocketCommunicator]:
    users = await sync_to_async(make_users)(prefix, count)
    keys = [await sync_to_async(session_key_for)(user) for user in users]
    sockets = []
    for key in keys:
        communicator = ws_communicator(session_key=key)
        assert (await communicator.connect())[0]
        assert (await receive_message(communicator))["type"] == "welcome"
        sockets.append(communicator)
    return sockets


async def _frames_until_quiet(communicator: WebsocketCommunicator, quiet: float) -> list[dict[str, Any]]:
    """Every frame until none arrives for ``quiet`` seconds (at most 500)."""
    frames: list[dict[str, Any]] = []
    for _ in range(500):
        if await communicator.receive_nothing(quiet):
            return frames
        frames.append(await receive_message(communicator))
    raise AssertionError("the frames never stopped")


@pytest.fixture
def fast_diffs(settings: SettingsWrapper) -> SettingsWrapper:
    settings.PRESENCE_DIFF_INTERVAL_SECONDS = 0.5
    return settings


async def test_a_join_storm_costs_each_subscriber_a_diff_per_interval_not_one_per_join(
    fast_diffs: SettingsWrapper,
) -> None:
    count = 30
    sockets = await _connect_many("storm", count)
    started = asyncio.get_running_loop().time()
    for communicator in sockets:
        await send_message(communicator, {"type": "subscribe", "topic": "room.storm"})
    observed = await asyncio.gather(*(_frames_until_quiet(communicator, 1.5) for communicator in sockets))
    elapsed = asyncio.get_running_loop().time() - started
    bound = int(elapsed / fast_diffs.PRESENCE_DIFF_INTERVAL_SECONDS) + 2
    diffs = [[f for f in frames if f["type"] == "presence_diff"] for frames in observed]
    assert all(len(d) <= bound for d in diffs), ([len(d) for d in diffs], bound)
    assert sum(len(d) for d in diffs) < count * (count - 1) / 4  # one per join would be about N²/2
    # Nobody hears of a user twice, and every join was announced to someone.
    heard = [[user["username"] for diff in d for user in diff["joined"]] for d in diffs]
    assert all(len(names) == len(set(names)) for names in heard)
    assert {name for names in heard for name in names} == {f"storm{i}" for i in range(count)}
    await send_message(sockets[0], {"type": "presence", "topic": "room.storm"})
    assert len((await receive_message(sockets[0]))["users"]) == count
    for communicator in sockets:
        await communicator.disconnect()


async def test_a_message_published_during_a_join_storm_waits_behind_no_more_than_one_diff(
    fast_diffs: SettingsWrapper,
) -> None:
    observer, publisher, *joiners = await _connect_many("rush", 25)
    await send_message(observer, {"type": "subscribe", "topic": "room.rush"})
    assert (await receive_message(observer))["type"] == "subscribed"  # so the message is not in its snapshot
    for communicator in joiners[:12]:
        await send_message(communicator, {"type": "subscribe", "topic": "room.rush"})
    await send_message(publisher, {"type": "publish", "topic": "room.rush", "text": "now", "ref": "r"})
    sent = asyncio.get_running_loop().time()
    for communicator in joiners[12:]:
        await send_message(communicator, {"type": "subscribe", "topic": "room.rush"})
    before: list[dict[str, Any]] = []
    for _ in range(100):
        frame = await receive_message(observer, wait=3)
        if frame["type"] == "message":
            break
        before.append(frame)
    delay = asyncio.get_running_loop().time() - sent
    assert frame["text"] == "now"
    assert delay < 1.5, delay
    assert len([f for f in before if f["type"] == "presence_diff"]) <= 2, before
    for communicator in (observer, publisher, *joiners):
        await communicator.disconnect()


async def test_a_topic_above_the_size_limit_gets_no_diffs_and_says_so(fast_diffs: SettingsWrapper) -> None:
    fast_diffs.PRESENCE_DIFF_MAX_SUBSCRIBERS = 1
    first, second = await _connect_many("crowd", 2)
    await send_message(first, {"type": "subscribe", "topic": "room.crowd"})
    assert (await receive_message(first))["type"] == "subscribed"
    assert (await receive_message(first))["type"] == "presence_diff"  # one user: diffs are on
    await send_message(first, {"type": "presence", "topic": "room.crowd"})
    assert "diffs" not in await receive_message(first)
    await send_message(second, {"type": "subscribe", "topic": "room.crowd"})
    assert (await receive_message(second))["type"] == "subscribed"
    assert await first.receive_nothing(1.2)
    assert await second.receive_nothing(0.1)
    await send_message(first, {"type": "presence", "topic": "room.crowd"})
    reply = await receive_message(first)
    assert reply["diffs"] is False
    assert [u["username"] for u in reply["users"]] == ["crowd0", "crowd1"]
    for communicator in (first, second):
        await communicator.disconnect()


async def test_presence_replies_are_pages_that_fit_the_frame_limit(settings: SettingsWrapper) -> None:
    settings.WS_MAX_MESSAGE_BYTES = 1024
    names = [f"{i:03d}-" + "é" * 60 for i in range(40)]  # about 130 bytes each: 40 need 5 kB
    entries = [PresenceEntry("room.pages", f"page{i}", 960_000 + i, name) for i, name in enumerate(names)]
    for entry in entries:
        await presence.join(entry)
    (reader,) = await _connect_many("pager", 1)
    collected: list[dict[str, Any]] = []
    request: dict[str, Any] = {"type": "presence", "topic": "room.pages"}
    for _ in range(len(names) + 1):
        await send_message(reader, request)
        raw = await reader.receive_from(3)
        assert len(raw.encode()) <= 1024
        reply = json.loads(raw)
        assert reply["type"] == "presence"
        collected += reply["users"]
        if "next" not in reply:
            break
        request = {"type": "presence", "topic": "room.pages", "after": reply["next"]}
    assert [u["username"] for u in collected] == names
    await send_message(reader, {"type": "presence", "topic": "room.pages", "after": 7})
    assert (await receive_message(reader))["code"] == "bad_message"
    await reader.disconnect()
    for entry in entries:
        await presence.leave(entry)


def test_a_diff_too_large_for_one_frame_is_split(settings: SettingsWrapper) -> None:
    settings.WS_MAX_MESSAGE_BYTES = 1024
    users = [{"id": i, "username": "x" * 100 + str(i)} for i in range(30)]
    frames = list(diff_frames("room.split", users[:20], users[20:]))
    assert len(frames) > 1
    assert all(len(json.dumps(f, separators=(",", ":")).encode()) <= 1024 for f in frames)
    assert [u for f in frames for u in f["joined"]] == users[:20]
    assert [u for f in frames for u in f["left"]] == users[20:]


async def test_while_draining_a_leave_is_announced_before_it_returns(
    fast_diffs: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_diffs.PRESENCE_DIFF_INTERVAL_SECONDS = 30.0  # a batched diff would wait this long
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(topic_group("room.drain-diff"), channel)
    tracker = PresenceTracker()
    entry = PresenceEntry("room.drain-diff", "drainconn", 930_001, "drainer")
    await tracker.join(entry)
    assert (await asyncio.wait_for(layer.receive(channel), 3))["joined"] == [entry.user]
    monkeypatch.setattr(registry, "draining", True)
    await tracker.leave(entry)
    assert (await asyncio.wait_for(layer.receive(channel), 0.5))["left"] == [entry.user]
    await layer.group_discard(topic_group("room.drain-diff"), channel)


class RecordingTracker(PresenceTracker):
    """A tracker that keeps every change it records."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[Change] = []

    def record(self, change: Change) -> None:
        self.recorded.append(change)
        super().record(change)


async def test_concurrent_joins_share_one_round_trip_and_each_user_joins_once(
    counted_redis: type[CountingConnection],
) -> None:
    """A subscribe storm's presence joins go out in one pipeline, not one script call per connection."""
    tracker = RecordingTracker()
    recorded = tracker.recorded
    # 40 users, the first five with a second connection: 45 entries, 40 users present.
    entries = [PresenceEntry("room.joinstorm", f"jconn{i}", 970_000 + i, f"j{i}") for i in range(40)]
    entries += [PresenceEntry("room.joinstorm", f"jconn-again{i}", 970_000 + i, f"j{i}") for i in range(5)]

    async def storm() -> None:
        await asyncio.gather(*(tracker.join(entry) for entry in entries))

    await get_redis().ping()  # a connection in the pool (its handshake is not the storm's)
    assert await _round_trips(counted_redis, storm) == 1
    assert len(recorded) == 45
    assert sorted(user["id"] for change in recorded for user in change.joined) == [970_000 + i for i in range(40)]
    assert max(change.size for change in recorded) == 40
    assert len(await presence.users("room.joinstorm")) == 40
    for entry in entries:
        await presence.leave(entry)
    if tracker._flusher is not None:
        tracker._flusher.cancel()
    if tracker._task is not None:
        tracker._task.cancel()


async def test_concurrent_leaves_share_one_round_trip_and_each_user_leaves_once(
    counted_redis: type[CountingConnection],
) -> None:
    """A drain's or a disconnect storm's presence leaves go out in one pipeline, not one script call each."""
    tracker = RecordingTracker()
    recorded = tracker.recorded
    entries = [PresenceEntry("room.leavestorm", f"lconn{i}", 971_000 + i, f"l{i}") for i in range(40)]
    entries += [PresenceEntry("room.leavestorm", f"lconn-again{i}", 971_000 + i, f"l{i}") for i in range(5)]
    await presence.join_many_counted(entries)
    assert len(await presence.users("room.leavestorm")) == 40

    async def storm() -> None:
        await asyncio.gather(*(tracker.leave(entry) for entry in entries))

    assert await _round_trips(counted_redis, storm) == 1
    assert len(recorded) == 45
    assert sorted(user["id"] for change in recorded for user in change.left) == [971_000 + i for i in range(40)]
    assert min(change.size for change in recorded) == 0
    assert await presence.users("room.leavestorm") == []
    if tracker._flusher is not None:
        tracker._flusher.cancel()


async def test_a_connect_and_disconnect_burst_shares_round_trips_and_still_takes_exactly_the_limit(
    counted_redis: type[CountingConnection],
) -> None:
    """300 connects of one user (limit 20) at once: one pipeline of atomic scripts, not 300 round trips."""
    tracker = SlotTracker()
    slots = [Slot(972_000, f"burst{i}") for i in range(300)]
    taken: list[bool] = []

    async def connects() -> None:
        taken.extend(await asyncio.gather(*(tracker.acquire(slot, 20) for slot in slots)))

    async def disconnects() -> None:
        await asyncio.gather(*(tracker.release(slot) for slot, ok in zip(slots, taken, strict=True) if ok))

    await get_redis().ping()
    assert await _round_trips(counted_redis, connects) == 1
    assert taken.count(True) == 20
    assert await open_connections(972_000) == 20
    assert await _round_trips(counted_redis, disconnects) == 1
    assert await open_connections(972_000) == 0
    if tracker._task is not None:
        tracker._task.cancel()
