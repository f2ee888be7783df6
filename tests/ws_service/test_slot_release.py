"""A connection's per-user slot is given back however the connection ends.

The limits middleware hands the connection over (it keeps no frame on the
connection's stack), so the consumer that took the slot gives it back as its
``__call__`` returns: after a close, a consumer's crash, a handler ending the
connection, a cancelled task, a drain (after ``release_all``, at no cost),
and with Redis down (a warning: the slot expires by itself). Every case runs
the ws stack with its middlewares against the real Redis of the test session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest
from asgiref.sync import sync_to_async
from channels.exceptions import StopConsumer
from channels.testing import WebsocketCommunicator
from django.urls import path
from pytest_django.fixtures import Settings as SettingsWrapper

from shared.redis_client import get_redis
from tests.support.communicators import ALLOWED_ORIGIN, receive_message, send_message, welcomed
from tests.support.servers import RedisServer
from tests.support.users import make_user, session_key_for
from ws_service.auth import TicketOrSessionAuthMiddleware
from ws_service.connection_context import ConnectionContextMiddleware
from ws_service.connection_slots import Slot, get_slot_tracker, open_connections
from ws_service.frames import FrameRegistry
from ws_service.host import HostValidator
from ws_service.kernel import KernelConsumer
from ws_service.limits import ConnectionLimitMiddleware
from ws_service.protocol import CLOSE_SERVICE_RESTART
from ws_service.registry import registry
from ws_service.url_router import HandOverURLRouter

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 5.0


class EndingConsumer(KernelConsumer):
    """A consumer whose client can end it: ``stop`` (a handler raising ``StopConsumer``), ``crash`` (a bug)."""

    frames: ClassVar[FrameRegistry] = FrameRegistry()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "crash":  # a consumer's own receive that raises: the connection's task ends with it
            raise RuntimeError("a bug in the consumer's receive")
        await super().receive(text_data, bytes_data)


async def on_stop(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    raise StopConsumer()


EndingConsumer.frames.request("stop", on_stop)

ending_application = HostValidator(
    ConnectionContextMiddleware(
        TicketOrSessionAuthMiddleware(
            ConnectionLimitMiddleware(HandOverURLRouter([path("ending/", EndingConsumer.as_asgi())]))
        )
    )
)


@pytest.fixture(autouse=True)
async def redis_closed_after() -> AsyncIterator[None]:
    """The loop's Redis client (``get_redis()``, shared with the app) is closed with the loop."""
    yield
    await get_redis().aclose()


@pytest.fixture
def not_draining() -> Iterator[None]:
    yield
    registry.draining = False


async def _session(username: str) -> tuple[int, str]:
    user = await sync_to_async(make_user)(username)
    return user.pk, await sync_to_async(session_key_for)(user)


async def _ending(key: str) -> WebsocketCommunicator:
    headers = [
        (b"host", b"localhost:8000"),
        (b"origin", ALLOWED_ORIGIN.encode()),
        (b"cookie", f"sessionid={key}".encode()),
    ]
    communicator = WebsocketCommunicator(ending_application, "/ending/", headers=headers)
    assert (await communicator.connect())[0]
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator


async def _ended(communicator: WebsocketCommunicator) -> BaseException | None:
    """Wait (bounded) until the connection's task is over; what it raised, if anything."""
    await asyncio.wait([communicator.future], timeout=WAIT)
    assert communicator.future.done()
    return None if communicator.future.cancelled() else communicator.future.exception()


async def test_a_closed_connection_gives_its_slot_back() -> None:
    user_id, key = await _session("alice")
    communicator = await welcomed(key)
    assert await open_connections(user_id) == 1
    await communicator.disconnect()
    assert await _ended(communicator) is None
    assert await open_connections(user_id) == 0
    assert not get_slot_tracker().slots


async def test_a_handler_ending_the_connection_gives_its_slot_back() -> None:
    user_id, key = await _session("alice")
    communicator = await _ending(key)
    assert await open_connections(user_id) == 1
    await send_message(communicator, {"type": "stop"})
    assert await _ended(communicator) is None
    assert await open_connections(user_id) == 0


async def test_a_crashing_consumer_gives_its_slot_back() -> None:
    user_id, key = await _session("alice")
    communicator = await _ending(key)
    assert await open_connections(user_id) == 1
    await communicator.send_to(text_data="crash")
    raised = await _ended(communicator)
    assert isinstance(raised, RuntimeError), raised
    assert await open_connections(user_id) == 0


async def test_a_cancelled_connection_gives_its_slot_back() -> None:
    user_id, key = await _session("alice")
    communicator = await welcomed(key)
    assert await open_connections(user_id) == 1
    communicator.future.cancel()
    await _ended(communicator)
    assert communicator.future.cancelled()
    assert await open_connections(user_id) == 0


async def test_after_release_all_a_drained_connection_gives_its_slot_back_at_no_cost(not_draining: None) -> None:
    """The drain gives every slot back in one round trip; each connection's own release is then a no-op."""
    user_id, key = await _session("alice")
    communicator = await welcomed(key)
    tracker = get_slot_tracker()
    slot = next(iter(tracker.slots))
    released: list[int] = []

    async def release_all() -> None:  # the process's drain cleanup (ws_service.launcher.drain) gives slots back
        released.append(await tracker.release_all())

    releases = tracker._releases.batches
    draining = asyncio.ensure_future(registry.drain(grace=WAIT, cleanup=release_all))
    assert (await communicator.receive_output(WAIT))["code"] == CLOSE_SERVICE_RESTART
    # Marked before any close went out: the connection's own release is still due, and will cost nothing.
    assert slot in tracker._released_early
    await communicator.send_input({"type": "websocket.disconnect", "code": CLOSE_SERVICE_RESTART})
    assert await asyncio.wait_for(draining, WAIT) is True
    assert await _ended(communicator) is None
    assert released == [1]
    assert slot not in tracker._released_early  # it ran (and sent nothing)
    assert tracker._releases.batches == releases
    assert await open_connections(user_id) == 0


async def test_with_redis_down_a_slot_that_cannot_be_given_back_is_logged_and_expires(
    settings: SettingsWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection still ends cleanly; its slot is no longer refreshed, so it expires by itself."""
    data = RedisServer()  # the data Redis (slots) alone; the channel layer stays on the test session's
    data.start()
    try:
        settings.REDIS_URL = data.url
        user_id, key = await _session("alice")
        communicator = await welcomed(key)
        assert await open_connections(user_id) == 1
        slot = Slot(user_id, next(iter(get_slot_tracker().slots)).connection_id)
        data.stop()
        with caplog.at_level(logging.WARNING, logger="ws.limits"):
            await communicator.disconnect()
            assert await _ended(communicator) is None
        assert "could not release connection slot (it expires by itself)" in caplog.text
        assert slot not in get_slot_tracker().slots  # no longer refreshed
    finally:
        data.destroy()
