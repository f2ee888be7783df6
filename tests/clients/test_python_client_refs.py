"""The Python client matches replies and errors by the ``ref`` every request carries, on each server.

Each request type meets a server error and fails at once with it (not by
timeout); requests of one type in flight together, some refused, each get
their own answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.clients.test_python_client import _client, _session_key
from tests.support.servers import DaphneServer
from wsclient import ServerError, WsClient

pytestmark = pytest.mark.django_db(transaction=True)

REQUEST_TIMEOUT = 8.0
# A refusal must arrive as its error frame, well before the request would time out.
FAST = REQUEST_TIMEOUT / 4


async def _refused(request: Any) -> ServerError:
    """The ``ServerError`` the awaitable ``request`` raises, checked to come from an error frame echoing a ref."""
    started = time.monotonic()
    with pytest.raises(ServerError) as refused:
        await request
    assert time.monotonic() - started < FAST, "refused by timeout, not by its error frame"
    frame = refused.value.frame
    assert frame["type"] == "error"
    assert isinstance(frame.get("ref"), str), f"the error echoes no ref: {frame}"
    return refused.value


def _outcome(result: object) -> object:
    """A gathered result, or the code of the ``ServerError`` it is."""
    return result.code if isinstance(result, ServerError) else result


async def _typing_error(client: WsClient, stream: Any, topic: str) -> dict[str, Any]:
    """Send ``typing`` to ``topic`` and return the error event echoing its ref."""
    ref = await client.typing(topic)
    async with asyncio.timeout(FAST):
        while (event := await stream.get("error"))["ref"] != ref:
            pass
    return dict(event)


async def test_each_request_type_fails_with_the_error_echoing_its_ref(ws_server: DaphneServer) -> None:
    _, key = await _session_key("pyref_alice")
    bob, _ = await _session_key("pyref_bob")
    theirs = f"user.{bob['id']}"
    async with _client(ws_server, session_cookie=key, request_timeout=REQUEST_TIMEOUT) as client:
        stream = client.events()
        assert (await _refused(client.subscribe(theirs))).code == "forbidden"
        assert (await _refused(client.subscribe("Not A Topic"))).code == "bad_topic"
        assert client.subscriptions == []  # a refused subscribe is not resubscribed
        assert (await _refused(client.unsubscribe("room.pyref-never"))).code == "not_subscribed"
        assert (await _refused(client.publish("room.pyref", ""))).code == "bad_message"
        assert (await _refused(client.publish(theirs, "not mine"))).code == "forbidden"
        assert (await _typing_error(client, stream, "room.pyref-never"))["code"] == "not_subscribed"
        assert (await client.whoami())["username"] == "pyref_alice"  # the connection is fine
        await client.ping()
        assert client.connected


async def test_concurrent_requests_of_one_type_each_get_their_own_answer(ws_server: DaphneServer) -> None:
    _, alice_key = await _session_key("pyref_c_alice")
    bob, bob_key = await _session_key("pyref_c_bob")
    crowded, quiet, theirs = "room.pyref-crowded", "room.pyref-quiet", f"user.{bob['id']}"
    async with (
        _client(ws_server, session_cookie=alice_key, request_timeout=REQUEST_TIMEOUT) as a,
        _client(ws_server, session_cookie=bob_key, request_timeout=REQUEST_TIMEOUT) as b,
    ):
        stream = a.events()
        await b.subscribe(crowded)
        # A refusal between two successes: each subscribe gets its own answer, whatever the order.
        got = await asyncio.gather(
            a.subscribe(crowded), a.subscribe(theirs), a.subscribe(quiet), return_exceptions=True
        )
        assert [_outcome(result) for result in got] == [0, "forbidden", 0]
        assert sorted(a.subscriptions) == sorted([crowded, quiet])

        ids = await asyncio.gather(*(a.publish(topic, f"m{i}") for i in range(3) for topic in (crowded, quiet)))
        assert (sorted(ids[0::2]), sorted(ids[1::2])) == ([1, 2, 3], [1, 2, 3]), ids
        published = await asyncio.gather(a.publish(quiet, "ok"), a.publish(theirs, "no"), return_exceptions=True)
        assert [_outcome(result) for result in published] == [4, "forbidden"]

        left = await asyncio.gather(a.unsubscribe("room.pyref-never"), a.unsubscribe(quiet), return_exceptions=True)
        assert [_outcome(result) for result in left] == ["not_subscribed", None]
        assert a.subscriptions == [crowded]

        # typing has no reply: only the refused one comes back, echoing its own ref.
        ok_ref = await a.typing(crowded)
        error = await _typing_error(a, stream, quiet)
        assert (error["code"], error["ref"] == ok_ref) == ("not_subscribed", False)
