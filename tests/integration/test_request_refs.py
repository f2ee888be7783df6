"""Every reply and every error echoes its request's ``ref``, on each server (docs/protocol.md, "Matching replies").

Every frame sent and received here is validated against docs/asyncapi.yaml.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection

from tests.support.live import open_ws, recv_json, send_json
from tests.support.servers import DaphneServer
from tests.support.users import make_user, session_key_for

pytestmark = pytest.mark.django_db(transaction=True)


async def _socket(ws_server: DaphneServer, username: str) -> tuple[ClientConnection, int]:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["type"] == "welcome"
    return ws, user.pk


# Frames pushed to subscribers, not answers to requests (``presence_diff`` when the server has presence).
PUSHED = frozenset({"presence_diff", "message", "typing"})


async def _next_answer(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not pushed (the server answers requests in order)."""
    async with asyncio.timeout(5):
        while (frame := await recv_json(ws))["type"] in PUSHED:
            pass
    return frame


async def _answer(ws: ClientConnection, frame: dict[str, Any], *, valid: bool = True) -> dict[str, Any]:
    """Send ``frame`` (checked against the spec unless ``valid`` is false) and return its answer."""
    if valid:
        await send_json(ws, frame)
    else:
        await ws.send(json.dumps(frame))
    return await _next_answer(ws)


async def test_every_reply_echoes_the_ref_of_its_request(ws_server: DaphneServer) -> None:
    ws, _ = await _socket(ws_server, "ref-replies")
    topic = "room.refs"
    requests: list[tuple[dict[str, Any], str]] = [
        ({"type": "subscribe", "topic": topic, "ref": "s1"}, "subscribed"),
        ({"type": "ping", "ref": "g1"}, "pong"),
        ({"type": "whoami", "ref": "w1"}, "whoami"),
        ({"type": "unsubscribe", "topic": topic, "ref": "u1"}, "unsubscribed"),
        ({"type": "publish", "topic": topic, "text": "hi", "ref": "x" * 64}, "ack"),
    ]
    for request, reply_type in requests:
        reply = await _answer(ws, request)
        assert (reply["type"], reply.get("ref")) == (reply_type, request["ref"]), request
    # Without a ref, no reply invents one (the ack keeps its null ref).
    assert await _answer(ws, {"type": "ping"}) == {"type": "pong"}
    assert "ref" not in await _answer(ws, {"type": "subscribe", "topic": topic})
    assert (await _answer(ws, {"type": "publish", "topic": topic, "text": "no ref"}))["ref"] is None
    await ws.close()


async def test_every_error_echoes_the_ref_of_its_request(ws_server: DaphneServer) -> None:
    ws, _ = await _socket(ws_server, "ref-errors")
    other_ws, other = await _socket(ws_server, "ref-other")
    await other_ws.close()
    forbidden = f"user.{other}"
    requests: list[tuple[dict[str, Any], str]] = [
        ({"type": "subscribe", "topic": forbidden, "ref": "e1"}, "forbidden"),
        ({"type": "subscribe", "topic": "room.x", "since": -1, "ref": "e2"}, "bad_message"),
        ({"type": "unsubscribe", "topic": "room.never", "ref": "e3"}, "not_subscribed"),
        ({"type": "publish", "topic": "room.x", "text": "", "ref": "e4"}, "bad_message"),
        ({"type": "typing", "topic": "room.never", "ref": "e7"}, "not_subscribed"),
        ({"type": "subscribe", "topic": "Not A Topic", "ref": "e8"}, "bad_topic"),
        ({"type": "shout", "ref": "e9"}, "unknown_type"),
    ]
    for request, code in requests:
        error = await _answer(ws, request, valid=False)  # some are refused by the spec too
        assert (error["type"], error["code"], error.get("ref")) == ("error", code, request["ref"]), request
    for bad_ref in (7, "y" * 65):  # an invalid ref is refused, and not echoed
        error = await _answer(ws, {"type": "ping", "ref": bad_ref}, valid=False)
        assert (error["type"], error["code"], "ref" in error) == ("error", "bad_message", False), bad_ref
    await ws.close()
