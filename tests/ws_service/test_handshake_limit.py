"""The per-address handshake limit (issue #11 F8): bounded in rate and in memory."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from prometheus_client import REGISTRY

from ws_service import metrics
from ws_service.asgi_types import Receive, Scope, Send
from ws_service.handshake_limit import (
    KEY_CACHE_SIZE,
    AddressBuckets,
    HandshakeLimitMiddleware,
    address_key,
    buckets_from_settings,
)
from ws_service.protocol import CLOSE_TOO_MANY_HANDSHAKES


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("not-an-address", "not-an-address"),
        ("x" * 500, "x" * 64),
    ],
)
def test_address_keys(address: str, key: str) -> None:
    assert address_key(address) == key


def test_a_burst_then_the_rate_per_address() -> None:
    clock = FakeClock()
    buckets = AddressBuckets(rate=2.0, burst=3, max_addresses=10, clock=clock)
    assert [buckets.allow("203.0.113.1") for _ in range(4)] == [True, True, True, False]
    assert buckets.allow("203.0.113.2")  # another address has its own bucket
    clock.now += 0.5  # one token back at 2 per second
    assert [buckets.allow("203.0.113.1") for _ in range(2)] == [True, False]


def test_one_ipv6_64_shares_a_bucket() -> None:
    buckets = AddressBuckets(rate=1.0, burst=2, max_addresses=10, clock=FakeClock())
    assert buckets.allow("2001:db8::1")
    assert buckets.allow("2001:db8::2")
    assert not buckets.allow("2001:db8::ffff")
    assert buckets.allow("2001:db8:0:1::1")


def test_memory_is_bounded_and_the_least_recently_seen_address_goes_first() -> None:
    buckets = AddressBuckets(rate=1.0, burst=1, max_addresses=3, clock=FakeClock())
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        buckets.allow(address)
    buckets.allow("10.0.0.1")  # seen again: now the most recent
    buckets.allow("10.0.0.4")
    assert "10.0.0.2" not in buckets
    assert all(address in buckets for address in ("10.0.0.1", "10.0.0.3", "10.0.0.4"))
    for i in range(10_000):
        buckets.allow(f"198.51.{i // 256}.{i % 256}")
    assert len(buckets) == 3


def test_remembered_address_keys_are_bounded() -> None:
    """Keys are remembered per process; clients cycling through addresses cannot grow that memory."""
    for index in range(KEY_CACHE_SIZE + 100):
        assert address_key(f"10.{index // 65536}.{index // 256 % 256}.{index % 256}") == (
            f"10.{index // 65536}.{index // 256 % 256}.{index % 256}"
        )
    info = address_key.cache_info()
    assert info.maxsize == KEY_CACHE_SIZE
    assert info.currsize <= KEY_CACHE_SIZE


def test_rate_zero_turns_the_limit_off_and_settings_build_the_buckets() -> None:
    with override_settings(WS_HANDSHAKES_PER_ADDRESS_PER_SECOND=0):
        assert buckets_from_settings() is None
    with override_settings(
        WS_HANDSHAKES_PER_ADDRESS_PER_SECOND=5.0,
        WS_HANDSHAKE_BURST_PER_ADDRESS=7,
        WS_HANDSHAKE_LIMIT_TRACKED_ADDRESSES=11,
    ):
        buckets = buckets_from_settings()
        assert buckets is not None
        assert (buckets.rate, buckets.burst, buckets.max_addresses) == (5.0, 7, 11)


class Recorder:
    """An inner app that counts handshakes, accepts and closes them with 1000."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})


async def _handshake(app: HandshakeLimitMiddleware, client: tuple[str, int] | None) -> dict[str, object]:
    """The first message the app sends back for one handshake from ``client``."""
    communicator = WebsocketCommunicator(app, "/ws/")
    if client is not None:
        communicator.scope["client"] = list(client)
    await communicator.send_input({"type": "websocket.connect"})
    first = await communicator.receive_output(2)
    then = await communicator.receive_output(2)
    await communicator.wait(2)
    return {"first": first["type"], "then": then}


def _attempts(outcome: str) -> float:
    return REGISTRY.get_sample_value("ws_connection_attempts_total", {"outcome": outcome}) or 0.0


async def test_over_the_limit_is_accepted_and_closed_4029_before_the_inner_app() -> None:
    inner = Recorder()
    app = HandshakeLimitMiddleware(inner, AddressBuckets(rate=0.001, burst=2, max_addresses=10))
    refused_before = _attempts(metrics.OUTCOME_TOO_MANY_HANDSHAKES)
    client = ("203.0.113.9", 5000)
    for _ in range(2):
        passed = await _handshake(app, client)
        assert passed == {"first": "websocket.accept", "then": {"type": "websocket.close", "code": 1000}}
    assert inner.calls == 2
    refused = await _handshake(app, client)
    assert refused == {"first": "websocket.accept", "then": {"type": "websocket.close", "code": 4029}}
    assert CLOSE_TOO_MANY_HANDSHAKES == 4029
    assert inner.calls == 2  # no origin check, no authentication, no query
    assert _attempts(metrics.OUTCOME_TOO_MANY_HANDSHAKES) == refused_before + 1
    await _handshake(app, ("203.0.113.10", 5000))
    assert inner.calls == 3


async def test_handshakes_without_a_client_address_and_a_disabled_limit_pass() -> None:
    inner = Recorder()
    app = HandshakeLimitMiddleware(inner, AddressBuckets(rate=0.001, burst=1, max_addresses=10))
    for _ in range(3):
        await _handshake(app, None)
    off = HandshakeLimitMiddleware(inner, None, from_settings=False)
    for _ in range(3):
        await _handshake(off, ("203.0.113.11", 1))
    assert inner.calls == 6
