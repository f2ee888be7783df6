"""Limits of the ws service: token bucket, JSON depth/strings, message size, rate, connections per user.

The middlewares run in the full ASGI stack (WebsocketCommunicator) against
the real PostgreSQL and Redis of the test session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from pytest_django.fixtures import Settings as SettingsWrapper

from shared import messaging
from shared.redis_client import get_redis
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.asgi_types import Message
from ws_service.connection_slots import Slot, get_slot_tracker, open_connections, user_key
from ws_service.limits import close_connection, frame_size
from ws_service.protocol import ErrorCode, ProtocolError, check_json_limits, parse_frame
from ws_service.token_bucket import TokenBucket, WindowCounter

pytestmark = pytest.mark.django_db(transaction=True)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- token bucket and window counter (pure) ---------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=5, clock=clock)
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.5  # one token back
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.now += 100  # refills, but never above the burst
    assert bucket.tokens == 5
    assert [bucket.try_acquire() for _ in range(6)] == [True] * 5 + [False]


def test_token_bucket_ignores_a_clock_going_backwards_and_refuses_bad_parameters() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.try_acquire()
    clock.now -= 50
    assert not bucket.try_acquire()
    clock.now += 1
    assert bucket.try_acquire()
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst >= 1"):
        TokenBucket(rate=1, burst=0)


def test_window_counter_counts_only_recent_events() -> None:
    clock = FakeClock()
    counter = WindowCounter(limit=3, window=10, clock=clock)
    assert not counter.hit()
    assert not counter.hit()
    clock.now += 10  # both fall out of the window
    assert not counter.hit()
    clock.now += 1
    assert not counter.hit()
    assert counter.hit()
    with pytest.raises(ValueError, match="limit >= 1"):
        WindowCounter(limit=0, window=1)


# -- JSON depth and string limits (pure) -----------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    """A message whose objects nest ``depth`` levels deep (the message itself is level 1)."""
    value: Any = 1
    for _ in range(depth - 1):
        value = {"a": value}
    return {"type": "ping", "x": value} if depth > 1 else {"type": "ping"}


@pytest.mark.parametrize(
    ("message", "ok"),
    [
        (_nested(16), True),
        (_nested(17), False),
        ({"type": "ping", "x": [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]}, True),  # 16 levels: object + 15 lists
        ({"type": "ping", "x": [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}, False),
        ({"type": "ping", "x": "a" * 8192}, True),
        ({"type": "ping", "x": "a" * 8193}, False),
        ({"type": "ping", "k" * 8193: 1}, False),
        ({"type": "ping", "x": [{"y": ["b" * 8193]}]}, False),
        ({"type": "ping", "x": "\ud800"}, False),
        ({"type": "ping", "\udfff": 1}, False),
        ({"type": "ping", "x": "\U0001f600 ok"}, True),
    ],
)
def test_parse_frame_enforces_depth_and_string_limits(message: dict[str, Any], ok: bool) -> None:
    text = json.dumps(message)  # ASCII with \u escapes, as a client would send it
    if ok:
        assert parse_frame(text, None) == message
    else:
        with pytest.raises(ProtocolError) as raised:
            parse_frame(text, None)
        assert raised.value.code is ErrorCode.BAD_MESSAGE


def test_parse_frame_limits_come_from_settings_and_can_be_given(settings: SettingsWrapper) -> None:
    settings.WS_MAX_JSON_DEPTH = 2
    settings.WS_MAX_STRING_LENGTH = 4
    assert parse_frame('{"type": "abc", "x": [1]}', None)["x"] == [1]
    for text in ('{"type": "abc", "x": [[1]]}', '{"type": "abcde"}'):
        with pytest.raises(ProtocolError):
            parse_frame(text, None)
    assert parse_frame('{"type": "abcde"}', None, max_depth=5, max_string_length=10)["type"] == "abcde"


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"a","x":[[1]]}',  # 3 levels in 22 characters: over a depth of 2
        '{"type":"a","x":"' + "b" * 30 + '"}',  # a 30-character string under a 40-character text limit
        '{"type":"a","x":"\\ud800"}',  # an escaped lone surrogate in short ASCII text
        '{"type":"a","x":"\ud800"}',  # a raw lone surrogate (not from the wire, but parse_frame gets a str)
        '{"type":"a","\\udfff":1}',
    ],
)
def test_parse_frame_text_shortcut_never_lets_a_bad_frame_through(text: str) -> None:
    """Short frames skip the walk of the parsed value only when the text proves the limits hold."""
    with pytest.raises(ProtocolError) as raised:
        parse_frame(text, None, max_depth=2, max_string_length=29 if '"b' in text else 64)
    assert raised.value.code is ErrorCode.BAD_MESSAGE


def test_parse_frame_text_shortcut_falls_back_to_the_walk() -> None:
    """Brackets inside strings and non-ASCII text take the walk, which accepts what is within the limits."""
    assert parse_frame('{"type":"[[[[{{{{"}', None, max_depth=2, max_string_length=64)["type"] == "[[[[{{{{"
    assert parse_frame('{"type":"\u00e9t\u00e9"}', None, max_depth=2, max_string_length=64)["type"] == "été"
    assert parse_frame('{"type":"été"}', None, max_depth=1, max_string_length=4)["type"] == "été"


def test_json_too_deep_for_the_parser_is_still_bad_json() -> None:
    with pytest.raises(ProtocolError) as raised:
        parse_frame("[" * 50_000, None)
    assert raised.value.code is ErrorCode.BAD_JSON


def test_check_json_limits_is_iterative() -> None:
    deep: Any = 1
    for _ in range(100_000):  # far beyond the recursion limit
        deep = [deep]
    with pytest.raises(ProtocolError):
        check_json_limits(deep, max_depth=16, max_string_length=10)
    check_json_limits(deep, max_depth=200_000, max_string_length=10)


def test_frame_size_counts_utf8_bytes() -> None:
    assert frame_size({"type": "websocket.receive", "text": "é" * 10}) == 20
    assert frame_size({"type": "websocket.receive", "text": "ping" * 10}) == 40  # ASCII: counted without a copy
    assert frame_size({"type": "websocket.receive", "text": "a\ud800"}) == 4  # a lone surrogate still counts 3 bytes
    assert frame_size({"type": "websocket.receive", "bytes": b"12345"}) == 5
    assert frame_size({"type": "websocket.receive", "bytes": None, "text": None}) == 0


async def test_close_falls_back_to_the_application_range_twin_when_the_server_refuses() -> None:
    sent: list[Message] = []

    async def picky_send(message: Message) -> None:
        code = message.get("code", 1000)
        if code != 1000 and not 3000 <= code <= 4999:
            raise Exception(f"invalid close code {code}")  # what autobahn raises
        sent.append(message)

    await close_connection(picky_send, 1008)
    await close_connection(picky_send, 1009)
    await close_connection(picky_send, 4429)
    assert [m["code"] for m in sent] == [4008, 4009, 4429]
    with pytest.raises(Exception, match="invalid close code 1011"):
        await close_connection(picky_send, 1011)


# -- the middlewares in the full stack --------------------------------------------


async def _session(username: str) -> tuple[int, str]:
    user = await sync_to_async(make_user)(username)
    return user.pk, await sync_to_async(session_key_for)(user)


@pytest.fixture(autouse=True)
async def redis_closed_after() -> AsyncIterator[None]:
    """The loop's Redis client (``get_redis()``, shared with the app) is closed with the loop."""
    yield
    await get_redis().aclose()


def limited_communicator(session_key: str | None = None) -> WebsocketCommunicator:
    """A communicator for the ws stack with every limit in place (as in ``ws_service/app.py``)."""
    from ws_service.auth import TicketOrSessionAuthMiddleware
    from ws_service.connection_context import ConnectionContextMiddleware
    from ws_service.limits import ConnectionLimitMiddleware, FrameLimitMiddleware
    from ws_service.origin import OriginValidator
    from ws_service.routing import websocket_router

    limited = ConnectionLimitMiddleware(FrameLimitMiddleware(websocket_router))
    communicator = ws_communicator(session_key=session_key)
    communicator.application = OriginValidator(ConnectionContextMiddleware(TicketOrSessionAuthMiddleware(limited)))
    return communicator


async def _connect(key: str) -> WebsocketCommunicator:
    communicator = limited_communicator(key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator


async def _group_members() -> int:
    client = get_redis()
    total = 0
    async for key in client.scan_iter(match=f"{django_settings.CHANNEL_LAYER_PREFIX}:group:*", count=500):
        total += int(await client.zcard(key))
    return total


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (json.dumps(_nested(17)), "bad_message"),
        (json.dumps({"type": "ping", "x": "a" * 8193}), "bad_message"),
        (json.dumps({"type": "publish", "topic": "room.a", "text": "hi", "ref": "r", "\ud800": 1}), "bad_message"),
        ("[" * 60_000, "bad_json"),
    ],
)
async def test_limits_of_a_frame_get_an_error_and_the_connection_stays_open(text: str, code: str) -> None:
    _, key = await _session("alice")
    communicator = await _connect(key)
    await communicator.send_to(text_data=text)
    error = await receive_message(communicator)
    assert (error["type"], error["code"]) == ("error", code)
    await send_message(communicator, {"type": "ping"})
    assert await receive_message(communicator) == {"type": "pong"}
    await communicator.disconnect()


async def test_an_oversize_frame_closes_with_1009_and_cleanup_runs(settings: SettingsWrapper) -> None:
    settings.WS_MAX_MESSAGE_BYTES = 2048
    _, key = await _session("alice")
    baseline = await _group_members()
    communicator = await _connect(key)
    assert await _group_members() > baseline
    await communicator.send_to(text_data=json.dumps({"type": "ping", "x": "a" * 2048}))
    assert await communicator.receive_output(3) == {"type": "websocket.close", "code": 1009}
    await communicator.wait(3)  # the consumer saw a disconnect and finished
    assert await _group_members() == baseline


async def test_a_frame_at_the_size_limit_passes(settings: SettingsWrapper) -> None:
    settings.WS_MAX_MESSAGE_BYTES = 2048
    _, key = await _session("alice")
    communicator = await _connect(key)
    frame = {"type": "ping", "x": ""}
    frame["x"] = "a" * (2048 - len(json.dumps(frame)))
    await communicator.send_to(text_data=json.dumps(frame))
    assert await receive_message(communicator) == {"type": "pong"}
    await communicator.send_to(bytes_data=b"x" * 2049)
    assert await communicator.receive_output(3) == {"type": "websocket.close", "code": 1009}
    await communicator.wait(3)


async def test_frames_over_the_rate_get_rate_limited_and_a_flood_closes_with_1008(settings: SettingsWrapper) -> None:
    settings.WS_RATE_LIMIT_PER_SECOND = 0.1
    settings.WS_RATE_LIMIT_BURST = 3
    settings.WS_RATE_LIMIT_STRIKES = 5
    _, key = await _session("alice")
    baseline = await _group_members()
    communicator = await _connect(key)
    for _ in range(3):
        await send_message(communicator, {"type": "ping"})
        assert await receive_message(communicator) == {"type": "pong"}
    # Over the limit: not processed (no ack, nothing stored), an error echoing the ref instead.
    for n in range(3):
        await send_message(communicator, {"type": "publish", "topic": "room.flood", "text": "x", "ref": f"r{n}"})
        error = await receive_message(communicator)
        assert error == {"type": "error", "code": "rate_limited", "detail": error["detail"], "ref": f"r{n}"}
    await communicator.send_to(text_data="not json")
    assert (await receive_message(communicator))["code"] == "rate_limited"
    # The fifth rejection within 10 s closes the connection.
    await send_message(communicator, {"type": "ping"})
    assert await communicator.receive_output(3) == {"type": "websocket.close", "code": 1008}
    await communicator.wait(3)
    assert await _group_members() == baseline
    assert await sync_to_async(messaging.last_id)("room.flood") == 0


async def test_connections_over_the_per_user_limit_are_closed_with_4429(settings: SettingsWrapper) -> None:
    settings.WS_MAX_CONNECTIONS_PER_USER = 2
    user_id, key = await _session("alice")
    _, other_key = await _session("bob")
    first, second = await _connect(key), await _connect(key)
    assert await open_connections(user_id) == 2
    third = limited_communicator(key)
    assert await third.connect() == (True, None)  # accepted, so the client can read the code
    assert await third.receive_output(3) == {"type": "websocket.close", "code": 4429}
    await third.wait(3)
    bob = await _connect(other_key)  # other users are not affected
    await first.disconnect()
    assert await open_connections(user_id) == 1
    again = await _connect(key)  # a freed slot can be taken again
    for communicator in (second, again, bob):
        await communicator.disconnect()
    assert await open_connections(user_id) == 0
    assert await get_redis().exists(user_key(user_id)) == 0


async def test_anonymous_connections_are_not_counted(settings: SettingsWrapper) -> None:
    settings.WS_MAX_CONNECTIONS_PER_USER = 1
    communicators = [limited_communicator() for _ in range(3)]
    for communicator in communicators:
        assert await communicator.connect() == (True, None)
        closed = await communicator.receive_output(3)
        assert (closed["type"], closed["code"]) == ("websocket.close", 4401)
        await communicator.disconnect()


async def test_slots_are_refreshed_and_a_released_one_is_not_resurrected() -> None:
    tracker = get_slot_tracker()
    kept, released = Slot(999_001, "kept"), Slot(999_002, "released")
    assert await tracker.acquire(kept, 1)
    assert await tracker.acquire(released, 1)
    assert not await tracker.acquire(Slot(999_001, "another"), 1)
    assert await tracker.acquire(kept, 1)  # the same connection asking again is not a new one
    await get_redis().delete(kept.key)  # Redis lost its data: the next round restores the slot
    await tracker.release(released)
    await tracker.tick()
    assert await open_connections(999_001) == 1
    assert await open_connections(999_002) == 0
    await tracker.release(kept)
    assert await open_connections(999_001) == 0


async def test_a_crashed_process_slots_stop_counting_after_ws_connection_ttl(settings: SettingsWrapper) -> None:
    """The slot TTL is the connection limit's own setting."""
    settings.WS_CONNECTION_TTL_SECONDS = 3
    tracker = get_slot_tracker()
    slot = Slot(999_004, "crashed")
    assert await tracker.acquire(slot, 1)
    tracker.slots.discard(slot)  # its process died: nobody refreshes the slot any more
    assert await open_connections(999_004) == 1
    assert await tracker.acquire(Slot(999_004, "after"), 1) is False
    await asyncio.sleep(3.2)
    assert await open_connections(999_004) == 0
    assert await tracker.acquire(Slot(999_004, "after"), 1)
    await tracker.release(Slot(999_004, "after"))


async def test_a_connect_burst_takes_exactly_the_limit_without_exhausting_the_redis_pool() -> None:
    tracker = get_slot_tracker()
    slots = [Slot(999_003, f"burst{i}") for i in range(300)]  # more than redis-py's pool of 100
    taken = await asyncio.gather(*(tracker.acquire(slot, 20) for slot in slots))
    assert sum(taken) == 20
    assert await open_connections(999_003) == 20
    await asyncio.gather(*(tracker.release(slot) for slot in slots))
    assert await open_connections(999_003) == 0


async def test_the_cached_refresh_follows_every_acquire_and_release() -> None:
    """The refresh's arguments are cached between rounds: a slot taken after a round is refreshed in the next,
    and one released while a round is in flight is not put back by it."""
    tracker = get_slot_tracker()
    first, later, gone = Slot(999_010, "first"), Slot(999_011, "later"), Slot(999_012, "gone")
    assert await tracker.acquire(first, 1)
    assert await tracker.acquire(gone, 1)
    await tracker.tick()  # builds and caches the arguments
    assert await tracker.acquire(later, 1)
    await get_redis().delete(first.key, later.key, gone.key)  # Redis lost its data
    round_ = asyncio.create_task(tracker.tick())
    await asyncio.sleep(0)  # the round is in flight
    await tracker.release(gone)
    await round_
    assert await open_connections(999_010) == 1
    assert await open_connections(999_011) == 1
    assert await open_connections(999_012) == 0
    for slot in (first, later):
        await tracker.release(slot)


def test_every_websocket_route_takes_its_slot_or_refuses_the_handshake() -> None:
    """A consumer route that is not a KernelConsumer would skip the per-user connection limit.

    The limit's slot is taken in the kernel's admission round trip
    (``ws_service.admission``); an app of your own on another path must
    subclass ``KernelConsumer`` or call ``admit(..., claim=scope[SLOT_CLAIM_KEY])``
    itself (and ``release_claim`` when its connection ends), and then be listed here.
    """
    from ws_service.kernel import KernelConsumer
    from ws_service.routing import unknown_path, websocket_router

    uncounted = []
    for route in websocket_router.routes:
        app = route.callback
        consumer = getattr(app, "consumer_class", None)
        if app is unknown_path or (consumer is not None and issubclass(consumer, KernelConsumer)):
            continue
        uncounted.append(str(route.pattern))
    assert uncounted == [], f"routes whose connections are not counted against WS_MAX_CONNECTIONS_PER_USER: {uncounted}"
