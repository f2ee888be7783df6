"""A ``presence`` reply and its errors echo the request's ``ref``, on each server (docs/presence.md).

Deleted with the presence feature; the other request types are in
tests/integration/test_request_refs.py. Frames are validated against docs/asyncapi.yaml.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_request_refs import _answer, _socket
from tests.support.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_presence_reply_and_its_errors_echo_the_ref(ws_server: DaphneServer) -> None:
    ws, _ = await _socket(ws_server, "ref-presence")
    other_ws, other = await _socket(ws_server, "ref-presence-other")
    await other_ws.close()
    assert (await _answer(ws, {"type": "subscribe", "topic": "room.refs", "ref": "s1"}))["ref"] == "s1"
    reply = await _answer(ws, {"type": "presence", "topic": "room.refs", "ref": "p1"})
    assert (reply["type"], reply.get("ref")) == ("presence", "p1")
    assert "ref" not in await _answer(ws, {"type": "presence", "topic": "room.refs"})
    requests: list[tuple[dict[str, Any], str]] = [
        ({"type": "presence", "topic": f"user.{other}", "ref": "e5"}, "forbidden"),
        ({"type": "presence", "topic": "room.x", "after": "not a cursor", "ref": "e6"}, "bad_message"),
    ]
    for request, code in requests:
        error = await _answer(ws, request, valid=False)
        assert (error["type"], error["code"], error.get("ref")) == ("error", code, request["ref"]), request
    await ws.close()
