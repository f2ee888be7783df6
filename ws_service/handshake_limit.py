"""Per-address handshake limit: a token bucket of handshakes per client address.

Every handshake that passes costs origin checks, a thread hop and queries for
authentication, Redis round trips for the connection slot and group joins.
One client opening sockets in a loop could keep a replica busy with that
alone, so each client address gets a bucket of ``WS_HANDSHAKE_BURST_PER_ADDRESS``
handshakes refilled at ``WS_HANDSHAKES_PER_ADDRESS_PER_SECOND``. A handshake
over it is accepted and closed at once with 4029 (retry after a backoff):
before the origin check, authentication or any query. An ASGI application
cannot answer HTTP 429; refusing before accept would be a 403, which clients
treat as final.

The client address is ``scope["client"][0]``: the peer, or the
``X-Forwarded-For`` address when the launcher trusts proxy headers
(``WS_PROXY_HEADERS``). Without that setting every client behind the proxy
shares the proxy's address, and so one bucket. An IPv6 address counts by its
/64 (one host usually holds the whole /64). A handshake with no client
address (a Unix socket) is not limited.

Memory is bounded: at most ``WS_HANDSHAKE_LIMIT_TRACKED_ADDRESSES`` buckets
(about 200 bytes each) per process, the least recently seen evicted first
(an evicted address starts again with a full bucket), and the keys of the
last ``KEY_CACHE_SIZE`` addresses seen are remembered. The limit is per
process: with ``WS_WORKERS`` > 1 or several replicas an address gets that
many handshakes from each. ``WS_HANDSHAKES_PER_ADDRESS_PER_SECOND=0`` turns it off.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable

from django.conf import settings

from ws_service import metrics
from ws_service.asgi_types import ASGIApp, Receive, Scope, Send, hands_over
from ws_service.protocol import CLOSE_TOO_MANY_HANDSHAKES
from ws_service.token_bucket import Clock, TokenBucket

logger = logging.getLogger("ws.handshake_limit")

IPV6_PREFIX = 64
MAX_KEY_LENGTH = 64
# Address keys remembered per process (parsing an address costs more than its bucket's check);
# a client cycling through addresses evicts the least recently used, never grows it.
KEY_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def address_key(address: str) -> str:
    """The bucket an address counts against: itself, or its /64 for IPv6 (remembered per process)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_KEY_LENGTH]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_PREFIX), strict=False))
    return str(parsed)


class AddressBuckets:
    """One token bucket per address key, at most ``max_addresses`` of them (least recently used evicted)."""

    def __init__(self, rate: float, burst: int, max_addresses: int, *, clock: Clock = time.monotonic) -> None:
        if max_addresses < 1:
            raise ValueError("max_addresses must be at least 1")
        TokenBucket(rate, burst, clock=clock)  # validates rate and burst up front
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, address: str) -> bool:
        return address_key(address) in self._buckets

    def allow(self, address: str) -> bool:
        """Take one handshake from ``address``'s bucket; ``False`` when it is empty."""
        key = address_key(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, clock=self._clock)
            if len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.try_acquire()


def buckets_from_settings() -> AddressBuckets | None:
    """The buckets ``WS_HANDSHAKE*`` settings describe; ``None`` when the limit is off."""
    rate: float = settings.WS_HANDSHAKES_PER_ADDRESS_PER_SECOND
    if rate <= 0:
        return None
    return AddressBuckets(rate, settings.WS_HANDSHAKE_BURST_PER_ADDRESS, settings.WS_HANDSHAKE_LIMIT_TRACKED_ADDRESSES)


async def _refuse(receive: Receive, send: Send) -> None:
    """Accept the handshake and close at once with 4029, so the client backs off and retries."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_TOO_MANY_HANDSHAKES})


class HandshakeLimitMiddleware:
    """Closes handshakes over the per-address rate with 4029 before any other work.

    Goes right inside ``HostValidator`` (which stamps the handshake's start for
    ``ws_handshake_seconds``) and before the origin check and authentication.
    """

    def __init__(self, inner: ASGIApp, buckets: AddressBuckets | None = None, *, from_settings: bool = True) -> None:
        self.inner = inner
        self.buckets = buckets if buckets is not None or not from_settings else buckets_from_settings()

    @hands_over
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        client = scope.get("client")
        if self.buckets is None or scope["type"] != "websocket" or not client or not client[0]:
            return self.inner(scope, receive, send)
        if self.buckets.allow(str(client[0])):
            return self.inner(scope, receive, send)
        logger.debug("refusing handshake: too many from %s", client[0])
        metrics.handshake_decided(scope, metrics.OUTCOME_TOO_MANY_HANDSHAKES)
        return _refuse(receive, send)
