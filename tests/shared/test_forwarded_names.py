"""Host names in FORWARDED_ALLOW_IPS: resolved on a peer miss, at most once per interval (shared/forwarded.py).

The lookups are the system resolver's: ``localhost`` (/etc/hosts), and
numeric hosts, which getaddrinfo answers without asking any server. Where a
name's answer must change between requests, the resolver given to the
middleware looks up a different real host (``target``) each time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.forwarded import TrustedProxyHeaders, resolve

SPOOFED = "203.0.113.9"


class Recorder:
    """An ASGI application that remembers the last scope it was called with."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope


async def client_seen(middleware: TrustedProxyHeaders, recorder: Recorder, peer: str) -> str:
    """The client address the application sees for a request from ``peer`` claiming to forward SPOOFED."""
    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 40000),
        "headers": [(b"x-forwarded-for", SPOOFED.encode()), (b"x-forwarded-proto", b"https")],
    }

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: dict[str, Any]) -> None:
        return None

    await middleware(scope, receive, send)
    assert recorder.scope is not None
    return str(recorder.scope["client"][0])


class Retargeted:
    """A resolver that looks up ``target`` (a real host) whatever name it is asked for."""

    def __init__(self, target: str) -> None:
        self.target = target

    async def __call__(self, name: str) -> frozenset[str]:
        return await resolve(self.target)


async def test_the_system_resolver_answers_for_localhost() -> None:
    assert "127.0.0.1" in await resolve("localhost")
    assert await resolve("127.0.0.2") == {"127.0.0.2"}


async def test_a_failed_or_slow_lookup_gives_no_address() -> None:
    assert await resolve("localhost", within=0) == frozenset()


async def test_a_named_proxy_is_trusted_at_the_address_it_resolves_to() -> None:
    recorder = Recorder()
    middleware = TrustedProxyHeaders(recorder, ["localhost"])
    assert not middleware.trusts("127.0.0.1")  # nothing is looked up before the first request
    assert await client_seen(middleware, recorder, "127.0.0.1") == SPOOFED
    assert recorder.scope is not None
    assert recorder.scope["scheme"] == "https"
    assert "127.0.0.1" in middleware.resolved
    assert middleware.trusts("127.0.0.1")


async def test_other_peers_are_not_trusted_because_of_a_name() -> None:
    recorder = Recorder()
    middleware = TrustedProxyHeaders(recorder, ["localhost", "10.9.9.9"])
    assert await client_seen(middleware, recorder, "127.0.0.2") == "127.0.0.2"
    assert middleware.lookups == 1
    # Fixed entries still count beside the names.
    assert await client_seen(middleware, recorder, "10.9.9.9") == SPOOFED


async def test_misses_look_the_names_up_at_most_once_per_interval() -> None:
    recorder = Recorder()
    middleware = TrustedProxyHeaders(recorder, ["localhost"], refresh_seconds=60)
    for _ in range(20):
        assert await client_seen(middleware, recorder, "127.0.0.2") == "127.0.0.2"
    assert middleware.lookups == 1
    # A trusted peer never causes a lookup.
    for _ in range(5):
        assert await client_seen(middleware, recorder, "127.0.0.1") == SPOOFED
    assert middleware.lookups == 1


async def test_concurrent_misses_share_one_lookup() -> None:
    recorder = Recorder()
    middleware = TrustedProxyHeaders(recorder, ["localhost"])
    await asyncio.gather(*(middleware.refresh() for _ in range(10)))
    assert middleware.lookups == 1
    assert middleware.trusts("127.0.0.1")


async def test_a_proxy_that_moved_is_trusted_at_its_new_address_only() -> None:
    recorder = Recorder()
    resolver = Retargeted("127.0.0.1")
    middleware = TrustedProxyHeaders(recorder, ["proxy"], refresh_seconds=0.05, resolver=resolver)
    assert await client_seen(middleware, recorder, "127.0.0.1") == SPOOFED

    resolver.target = "127.0.0.3"  # the proxy was recreated with another address
    await asyncio.sleep(0.1)
    # Its first request is a miss, looks the name up again and is trusted ...
    assert await client_seen(middleware, recorder, "127.0.0.3") == SPOOFED
    assert middleware.lookups == 2
    # ... and the old address (perhaps another container's by now) no longer is.
    assert not middleware.trusts("127.0.0.1")
    assert await client_seen(middleware, recorder, "127.0.0.1") == "127.0.0.1"


async def test_a_name_that_stops_resolving_trusts_nothing() -> None:
    recorder = Recorder()
    middleware = TrustedProxyHeaders(recorder, ["proxy"], refresh_seconds=0.05, resolver=Retargeted("127.0.0.1"))
    assert await client_seen(middleware, recorder, "127.0.0.1") == SPOOFED

    async def failing(name: str) -> frozenset[str]:
        return await resolve("localhost", within=0)

    middleware.resolver = failing
    await asyncio.sleep(0.1)
    assert await client_seen(middleware, recorder, "127.0.0.2") == "127.0.0.2"
    assert middleware.resolved == frozenset()
    assert not middleware.trusts("127.0.0.1")


@pytest.mark.parametrize("kind", ["websocket", "http"])
async def test_websocket_scopes_trigger_the_lookup_too(kind: str) -> None:
    recorder = Recorder()
    middleware = TrustedProxyHeaders(recorder, ["localhost"])
    scope = {"type": kind, "client": ("127.0.0.1", 1), "headers": [(b"x-forwarded-for", SPOOFED.encode())]}

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: dict[str, Any]) -> None:
        return None

    await middleware(scope, receive, send)
    assert middleware.lookups == 1
    assert recorder.scope is not None
    assert recorder.scope["client"][0] == SPOOFED
