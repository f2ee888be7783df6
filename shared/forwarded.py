"""X-Forwarded-For/-Proto, honoured only from trusted proxies (``FORWARDED_ALLOW_IPS``).

Daphne's ``--proxy-headers`` takes the client address and scheme from these
headers whatever peer sent them: anything that can reach the port directly
(another container on the network) could claim any address. Both services
therefore leave the servers' own header handling off and wrap the application
in :class:`TrustedProxyHeaders`, which applies Uvicorn's
``ProxyHeadersMiddleware`` only when the TCP peer is one of the trusted
addresses or networks, under Daphne and Uvicorn alike.

An entry may also be a host name (compose: ``proxy``, the proxy service's
name on the edge network, whose address Docker allocates). A name is looked
up when a request comes from a peer that is not trusted yet: the proxy's
first request after start-up, or after it was recreated with a new address.
Lookups run at most once per ``REFRESH_SECONDS`` per process, off the event
loop and bounded by ``LOOKUP_TIMEOUT_SECONDS``; the addresses found replace
the previous ones, and a name that does not resolve contributes none (fail
closed: its old address may already belong to another container). A name is
trusted as far as the resolver that answers for it: use one only where that
resolver is the orchestrator's own (Docker's embedded DNS, /etc/hosts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

VARIABLE = "FORWARDED_ALLOW_IPS"
DEFAULT = ("127.0.0.1",)
# The least time between two lookups of the names in one process.
REFRESH_SECONDS = 1.0
# A lookup that takes longer counts as failed (the name trusts no address).
LOOKUP_TIMEOUT_SECONDS = 2.0

logger = logging.getLogger("shared.forwarded")

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def is_hostname(entry: str) -> bool:
    """Whether ``entry`` is a DNS host name (and not an IP address, which also matches the syntax)."""
    if len(entry) > 253 or not _HOSTNAME.fullmatch(entry):
        return False
    # "10.0.0.300" fits the syntax but is a mistyped address; no top-level label is all digits.
    return not entry.rstrip(".").rsplit(".", 1)[-1].isdigit()


def trusted_proxies(entries: Sequence[str], variable: str = VARIABLE) -> tuple[str, ...]:
    """The validated list: IP addresses, CIDR networks, host names, or ``*`` (every peer) alone.

    Uvicorn silently treats a malformed entry as a literal that never matches;
    here it fails start-up, naming the variable.
    """
    if not entries:
        raise ImproperlyConfigured(f"{variable} is empty: list the proxy's addresses, networks or host names")
    if "*" in entries:
        if len(entries) > 1:
            raise ImproperlyConfigured(f"{variable}: '*' trusts every peer and stands alone")
        return ("*",)
    for entry in entries:
        try:
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            if "/" in entry or not is_hostname(entry):
                raise ImproperlyConfigured(
                    f"{variable}: {entry!r} is neither an IP address, a network nor a host name"
                ) from None
    return tuple(entries)


async def resolve(name: str, within: float = LOOKUP_TIMEOUT_SECONDS) -> frozenset[str]:
    """The IPv4 and IPv6 addresses ``name`` has now (the system resolver, off the event loop); none on failure."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        logger.debug("trusted proxy name %r did not resolve: %r", name, exc)
        return frozenset()
    # sockaddr[0] is the address; an IPv6 link-local one may carry "%scope".
    return frozenset(str(info[4][0]).split("%", 1)[0] for info in infos)


class TrustedProxyHeaders:
    """ASGI middleware: client address and scheme from X-Forwarded-For/-Proto of trusted peers only.

    ``trusted`` is :func:`trusted_proxies`' list. Addresses and networks are
    fixed; host names are resolved as the module docstring describes, by
    ``resolver`` (:func:`resolve`: the system's).
    """

    def __init__(
        self,
        app: Any,
        trusted: Sequence[str],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        resolver: Callable[[str], Awaitable[frozenset[str]]] = resolve,
    ) -> None:
        self.app = app
        self.resolver = resolver
        self.names = tuple(entry for entry in trusted if entry != "*" and is_hostname(entry))
        self.fixed = tuple(entry for entry in trusted if entry not in self.names)
        self.refresh_seconds = refresh_seconds
        self.resolved: frozenset[str] = frozenset()
        self.lookups = 0
        self._last_lookup = -float("inf")
        self._pending: asyncio.Future[None] | None = None
        self._found: dict[str, frozenset[str]] = {}
        self._middleware = ProxyHeadersMiddleware(app, trusted_hosts=list(self.fixed))

    def trusts(self, peer: str) -> bool:
        """Whether forwarded headers from ``peer`` count right now (no lookup)."""
        return peer in self._middleware.trusted_hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.names and scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if client and not self.trusts(client[0]):
                await self.refresh()
        await self._middleware(scope, receive, send)

    async def refresh(self) -> None:
        """Look the names up again, unless that happened less than ``refresh_seconds`` ago.

        Concurrent callers share one lookup; a caller within the interval
        uses the addresses already known.
        """
        pending = self._pending
        if pending is not None and not pending.done() and pending.get_loop() is asyncio.get_running_loop():
            await asyncio.shield(pending)
            return
        now = time.monotonic()
        if now - self._last_lookup < self.refresh_seconds:
            return
        self._last_lookup = now
        self._pending = asyncio.get_running_loop().create_future()
        try:
            await self._lookup()
        finally:
            self._pending.set_result(None)

    async def _lookup(self) -> None:
        self.lookups += 1
        found = await asyncio.gather(*(self.resolver(name) for name in self.names))
        for name, addresses_of_name in zip(self.names, found, strict=True):
            if not addresses_of_name and self._found.get(name) != frozenset():
                # Once per name until it resolves again (compose starts the proxy after web and ws).
                logger.warning("trusted proxy name %r does not resolve (yet): its headers are ignored", name)
            self._found[name] = addresses_of_name
        addresses = frozenset().union(*found)
        if addresses != self.resolved:
            logger.info("trusted proxy addresses: %s -> %s", ",".join(self.names), ",".join(sorted(addresses)) or "-")
            self.resolved = addresses
            self._middleware = ProxyHeadersMiddleware(self.app, trusted_hosts=[*self.fixed, *sorted(addresses)])


def with_trusted_proxy_headers(application: Any, trusted: Sequence[str]) -> TrustedProxyHeaders:
    """``application`` taking client address and scheme from X-Forwarded-For/-Proto of ``trusted`` peers only."""
    return TrustedProxyHeaders(application, trusted)
