"""The Python client continues a capped replay (more_history) until it has caught up, on both servers."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from tests.clients.conftest import CAPPED_REPLAY_MESSAGES
from tests.support.servers import DaphneServer
from tests.support.users import make_user, session_key_for
from wsclient import Backoff, WsClient
from wsclient.events import Event

pytestmark = pytest.mark.django_db(transaction=True)


async def _key(username: str) -> str:
    user = await sync_to_async(make_user)(username)
    return await sync_to_async(session_key_for)(user)


def _client(server: DaphneServer, key: str) -> WsClient:
    return WsClient(f"{server.ws_url}/ws/", session_cookie=key, backoff=Backoff(base=0.05, cap=0.5))


async def test_a_capped_replay_is_continued_once_in_order_then_live(capped_ws_server: DaphneServer) -> None:
    room = f"room.continue-{capped_ws_server.env['WS_SERVER']}"
    total = CAPPED_REPLAY_MESSAGES * 2 + 2
    async with _client(capped_ws_server, await _key("py-publisher")) as publisher:
        for i in range(total):
            await publisher.publish(room, f"m{i + 1}")
        async with _client(capped_ws_server, await _key("py-reader")) as reader:
            stream = reader.events()
            await reader.subscribe(room, since=0)
            ids: list[int] = []
            parts = 0
            events: list[Event] = []
            async with asyncio.timeout(20):
                while len(ids) < total:
                    event = await stream.get("message", "more_history")
                    events.append(event)
                    if event["type"] == "more_history":
                        parts += 1
                    elif event["topic"] == room:
                        ids.append(event["id"])
            assert parts == 2, events
            live = await publisher.publish(room, "live")
            async with asyncio.timeout(10):
                while len(ids) < total + 1:
                    event = await stream.get("message")
                    ids.append(event["id"])
            assert ids == [*range(1, total + 1), live]
            assert reader.duplicates_dropped == 0
            assert reader.last_id(room) == live
