"""A subscribe storm against a real ws process, on each supported server (issue #12, item 3).

Distinct users subscribing to one topic at once cost each subscriber about
one ``presence_diff`` per ``PRESENCE_DIFF_INTERVAL_SECONDS`` (1 s by default),
not one per join, and a publish right after the storm reaches every
subscriber promptly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection

from tests.support.live import open_ws, recv_json, recv_type, send_json
from tests.support.servers import DaphneServer
from tests.support.users import make_users, session_key_for

pytestmark = pytest.mark.django_db(transaction=True)

USERS = 40
DIFF_INTERVAL = 1.0  # the default PRESENCE_DIFF_INTERVAL_SECONDS
QUIET = 2.0  # no frame for this long: the storm is over for this socket


async def _frames_until_quiet(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every frame until none arrives for ``QUIET`` seconds (at most 1,000)."""
    frames: list[dict[str, Any]] = []
    for _ in range(1000):
        try:
            frames.append(await recv_json(ws, QUIET))
        except TimeoutError:
            return frames
    raise AssertionError("the frames never stopped")


async def test_a_subscribe_storm_sends_each_subscriber_a_diff_per_interval(ws_server: DaphneServer) -> None:
    users = await sync_to_async(make_users)("stormer", USERS)
    keys = [await sync_to_async(session_key_for)(user) for user in users]
    sockets = [await open_ws(ws_server.ws_url, cookie=f"sessionid={key}") for key in keys]
    try:
        for ws in sockets:
            assert (await recv_json(ws))["type"] == "welcome"
        started = time.monotonic()
        for ws in sockets:
            await send_json(ws, {"type": "subscribe", "topic": "room.live-storm"})
        observed = await asyncio.gather(*(_frames_until_quiet(ws) for ws in sockets))
        elapsed = time.monotonic() - started - QUIET
        assert all(any(f["type"] == "subscribed" for f in frames) for frames in observed)
        diffs = [sum(f["type"] == "presence_diff" for f in frames) for frames in observed]
        bound = int(elapsed / DIFF_INTERVAL) + 2
        assert max(diffs) <= bound, (diffs, elapsed)
        assert sum(diffs) < USERS * USERS / 4, diffs  # one diff per join would be about N²/2

        await send_json(sockets[0], {"type": "publish", "topic": "room.live-storm", "text": "after", "ref": "a"})
        published = time.monotonic()
        got = await asyncio.gather(*(recv_type(ws, "message", wait=5) for ws in sockets))
        assert [m["text"] for m in got] == ["after"] * USERS
        assert time.monotonic() - published < 2.0
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
