"""Property-based test of message handling over the full ASGI stack (hypothesis).

Arbitrary frames (JSON values, frames shaped like real requests with random
fields, arbitrary text and bytes) go to one authenticated connection through
the whole stack (origin, auth, limits, consumer). Whatever arrives:

* no exception escapes the application;
* the connection is never closed (so never with 1011);
* every frame sent back is a JSON object that encodes as UTF-8 (as a real
  server must send it);
* the connection still answers afterwards.

Each example is followed by a sentinel request whose error echoes a unique
``ref``, so the replies to one example never leak into the next.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django.fixtures import Settings as DjangoSettings

from shared.redis_client import get_redis
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.consumers import ConnectionConsumer

pytestmark = pytest.mark.django_db(transaction=True)

REPLY_WAIT = 5.0
MAX_REPLIES_PER_EXAMPLE = 50
PUSHED_TYPES = {"presence_diff", "message"}  # pushed after a subscribe (presence_diff with presence)

# Strings include lone surrogates: json.dumps writes them as "\udxxx" escapes, which a client can send.
strings = st.text(max_size=30) | st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | strings,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
request_types = st.sampled_from([*sorted(ConnectionConsumer.frames.requests), "nope", ""])
topics = st.one_of(
    st.sampled_from(["room.props", "room.a-b_c", "user.1", "user.999999", "room.", "room.UPPER", "x" * 70]),
    json_values,
)
requests = st.fixed_dictionaries(
    {"type": request_types},
    optional={
        "topic": topics,
        "text": st.one_of(st.text(max_size=50), json_values),
        "since": st.one_of(st.integers(min_value=-5, max_value=10**20), json_values),
        "ref": st.one_of(st.text(max_size=70), json_values),
        "extra": json_values,
    },
)
frames = st.one_of(
    requests.map(lambda request: {"text": json.dumps(request)}),
    json_values.map(lambda value: {"text": json.dumps(value)}),
    st.text(max_size=200).map(lambda text: {"text": text}),
    st.binary(max_size=200).map(lambda data: {"bytes": data}),
)


class Connection:
    """One authenticated connection on a private event loop, driven synchronously by hypothesis."""

    def __init__(self, loop: asyncio.AbstractEventLoop, communicator: WebsocketCommunicator) -> None:
        self.loop = loop
        self.communicator = communicator

    def exchange(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        return self.loop.run_until_complete(self._exchange(frame))

    async def _exchange(self, frame: dict[str, Any]) -> list[dict[str, Any]]:
        # Raw ASGI input: the communicator's send_to refuses empty frames, which clients can send.
        await self.communicator.send_input({"type": "websocket.receive", **frame})
        sentinel = uuid.uuid4().hex
        await send_message(self.communicator, {"type": "sentinel", "ref": sentinel})
        replies: list[dict[str, Any]] = []
        for _ in range(MAX_REPLIES_PER_EXAMPLE):
            output = await self.communicator.receive_output(REPLY_WAIT)
            assert output["type"] == "websocket.send", f"the connection was closed: {output}"
            text = output["text"]
            text.encode("utf-8")  # what a real server must be able to send
            reply = json.loads(text)
            assert isinstance(reply, dict)
            if reply.get("ref") == sentinel:
                assert reply["code"] == "unknown_type"
                return replies
            replies.append(reply)
        raise AssertionError(f"no sentinel reply after {MAX_REPLIES_PER_EXAMPLE} frames")


@pytest.fixture
def connection(settings: DjangoSettings) -> Iterator[Connection]:
    """A welcomed connection; the rate limit is lifted so hundreds of examples can run on it."""
    settings.WS_RATE_LIMIT_BURST = 1_000_000
    settings.WS_RATE_LIMIT_PER_SECOND = 1_000_000.0
    key = session_key_for(make_user("prop"))
    loop = asyncio.new_event_loop()
    communicator = ws_communicator(session_key=key)

    async def open_connection() -> None:
        connected, _ = await communicator.connect()
        assert connected
        assert (await receive_message(communicator))["type"] == "welcome"

    loop.run_until_complete(open_connection())
    yield Connection(loop, communicator)
    loop.run_until_complete(communicator.disconnect())
    loop.run_until_complete(_stop_background_work())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


async def _stop_background_work() -> None:
    """Cancel the per-process background tasks (refreshers) and close the loop's Redis client."""
    background = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await get_redis().aclose()


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    database=None,  # no example database written into the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames)
@example(frame={"text": '{"type": "nope", "ref": "\\ud800"}'})  # an echoed lone surrogate could not be sent
@example(frame={"text": '{"type": "publish", "topic": "room.props", "text": "\\udfff"}'})
@example(frame={"text": ""})
def test_no_frame_escapes_as_an_exception_or_closes_the_connection(
    connection: Connection, frame: dict[str, Any]
) -> None:
    for reply in connection.exchange(frame):
        assert isinstance(reply.get("type"), str)
        if reply["type"] == "error":
            assert reply["code"] != "internal", reply
    # Still answering; pushes of an earlier subscribe may arrive in between.
    replies = connection.exchange({"text": '{"type": "ping"}'})
    assert {"type": "pong"} in replies
    assert {reply["type"] for reply in replies} <= {"pong", *PUSHED_TYPES}
