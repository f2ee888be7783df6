"""Message text PostgreSQL cannot store is ``bad_message`` on the WebSocket path too (live, both servers)."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from shared.models import Message
from tests.support.live import open_ws, recv_json
from tests.support.servers import DaphneServer
from tests.support.users import make_user, session_key_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_ws_publish_with_nul_is_bad_message_and_nothing_is_stored(ws_server: DaphneServer) -> None:
    user = await sync_to_async(make_user)("nul-sender")
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}")
    try:
        assert (await recv_json(ws))["type"] == "welcome"
        await ws.send(json.dumps({"type": "publish", "topic": "room.nul", "text": "a\u0000b", "ref": "r1"}))
        error = await recv_json(ws)
        assert (error["type"], error["code"], error.get("ref")) == ("error", "bad_message", "r1")
        assert "NUL" in error["detail"]
        await ws.send(json.dumps({"type": "publish", "topic": "room.nul", "text": "fine", "ref": "r2"}))
        ack = await recv_json(ws)
        assert (ack["type"], ack["id"], ack["ref"]) == ("ack", 1, "r2")  # the connection still works
    finally:
        await ws.close()
    texts = await sync_to_async(lambda: list(Message.objects.filter(topic="room.nul").values_list("text", flat=True)))()
    assert texts == ["fine"]
