"""Presence bookkeeping stays bounded: empty topics leave it, sweeps cost what is live (issue #11, F3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from pytest_django.fixtures import Settings as SettingsWrapper

from shared import presence
from shared.presence import PresenceEntry
from shared.redis_client import get_redis
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_user, session_key_for

pytestmark = pytest.mark.django_db(transaction=True)

CHURN_TOPICS = 500


@pytest.fixture
async def clean_presence() -> AsyncIterator[None]:
    """No presence keys from earlier tests; the loop's Redis client is closed afterwards."""
    await _delete_presence_keys()
    yield
    await _delete_presence_keys()
    await get_redis().aclose()


async def _delete_presence_keys() -> None:
    client = get_redis()
    keys = [key async for key in client.scan_iter(match=f"{django_settings.CHANNEL_LAYER_PREFIX}:presence:*")]
    if keys:
        await client.delete(*keys)


async def _presence_keys() -> list[str]:
    client = get_redis()
    pattern = f"{django_settings.CHANNEL_LAYER_PREFIX}:presence:*"
    return sorted([str(key) async for key in client.scan_iter(match=pattern, count=1000)])


async def _evals() -> int:
    """Scripts Redis has run so far (INFO commandstats)."""
    stats: dict[str, Any] = await get_redis().info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_eval", "cmdstat_evalsha"))


def _entry(topic: str, n: int = 1) -> PresenceEntry:
    return PresenceEntry(topic, f"conn{n}", n, f"user{n}")


async def test_topics_whose_last_entry_left_leave_the_bookkeeping(clean_presence: None) -> None:
    live = [_entry("room.live-a"), _entry("room.live-b", 2)]
    for entry in live:
        await presence.join(entry)
    for i in range(CHURN_TOPICS):
        entry = _entry(f"room.churn-{i}")
        assert await presence.join(entry)
        assert await presence.leave(entry)
    assert await get_redis().zcard(presence.deadlines_key()) == len(live)
    # Only the live topics' keys are left: their entries, their user counts, and the deadlines.
    assert len(await _presence_keys()) == 2 * len(live) + 1
    assert [u["username"] for u in await presence.users("room.live-a")] == ["user1"]


async def test_a_join_right_after_the_last_leave_is_tracked_again(clean_presence: None) -> None:
    first, second = _entry("room.again"), _entry("room.again", 2)
    await presence.join(first)
    await presence.leave(first)
    assert await presence.join(second)
    assert await get_redis().zscore(presence.deadlines_key(), "room.again") is not None
    assert [u["id"] for u in await presence.users("room.again")] == [2]


async def test_a_sweep_after_many_dead_topics_touches_only_due_ones(clean_presence: None) -> None:
    for i in range(CHURN_TOPICS):
        entry = _entry(f"room.dead-{i}")
        await presence.join(entry)
        await presence.leave(entry)
    await presence.join(_entry("room.alive"))  # not due for PRESENCE_TTL_SECONDS
    before = await _evals()
    assert await presence.sweep() == {}
    assert await _evals() - before == 0, "the sweep ran scripts on topics with nothing due"


async def test_a_crashed_replicas_entries_still_expire_within_the_ttl(
    clean_presence: None, settings: SettingsWrapper
) -> None:
    settings.PRESENCE_TTL_SECONDS = 1
    gone = _entry("room.crash", 7)
    await presence.join(gone)  # never refreshed again: its process crashed
    await presence.join(_entry("room.other", 8))
    await asyncio.sleep(1.2)
    assert await presence.sweep() == {
        "room.crash": [{"id": 7, "username": "user7"}],
        "room.other": [{"id": 8, "username": "user8"}],
    }
    assert await get_redis().zcard(presence.deadlines_key()) == 0
    assert await _presence_keys() == []


async def test_an_older_versions_topic_set_is_drained_by_sweeps(clean_presence: None) -> None:
    """Entries written by an older replica (plain set of topics) still expire, and the set empties."""
    client = get_redis()
    keys = presence._keys("room.legacy")
    await client.zadd(keys[0], {"old|9|user9": 1.0})  # expired long ago
    await client.hincrby(keys[1], "9", 1)
    await client.sadd(presence.legacy_topics_key(), "room.legacy", "room.empty-legacy")
    assert await presence.sweep() == {"room.legacy": [{"id": 9, "username": "user9"}]}
    assert await _presence_keys() == []


async def test_subscribe_unsubscribe_churn_over_the_socket_leaves_only_live_topics(
    clean_presence: None, settings: SettingsWrapper
) -> None:
    settings.WS_RATE_LIMIT_PER_SECOND = 1000.0
    settings.WS_RATE_LIMIT_BURST = 1000
    user = await sync_to_async(make_user)("churner")
    communicator = ws_communicator(session_key=await sync_to_async(session_key_for)(user))
    assert (await communicator.connect())[0]
    assert (await receive_message(communicator))["type"] == "welcome"
    await send_message(communicator, {"type": "subscribe", "topic": "room.stay"})
    for i in range(40):
        await send_message(communicator, {"type": "subscribe", "topic": f"room.visit-{i}"})
        await send_message(communicator, {"type": "unsubscribe", "topic": f"room.visit-{i}"})
    unsubscribed = 0
    for _ in range(200):
        frame = await receive_message(communicator)
        unsubscribed += frame["type"] == "unsubscribed"
        if unsubscribed == 40:
            break
    assert unsubscribed == 40
    assert await get_redis().zrange(presence.deadlines_key(), 0, -1) == ["room.stay"]
    await communicator.disconnect()
    assert await get_redis().zcard(presence.deadlines_key()) == 0
