"""Host header validation at the WebSocket handshake (Django's ALLOWED_HOSTS).

Django checks the Host header of every HTTP request (``HttpRequest.get_host``)
but nothing checks a WebSocket handshake's: Channels hands the scope straight
to the consumer. ``HostValidator`` applies the same rule to handshakes so that
a request for a foreign host (DNS rebinding, cache or password-reset style
host poisoning) is refused with HTTP 403 before any authentication runs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Sequence

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from ws_service import metrics
from ws_service.asgi_types import ASGIApp, Receive, Scope, Send, deny_handshake, hands_over

logger = logging.getLogger("ws.host")

# Django's own fallback when DEBUG is on and ALLOWED_HOSTS is empty.
DEBUG_ALLOWED_HOSTS = (".localhost", "127.0.0.1", "[::1]")
# Verdicts kept per process: a client choosing Host headers evicts older ones, never grows it.
VERDICT_CACHE_SIZE = 1024


def _host_headers(scope: Scope) -> list[str]:
    """Every ``Host`` header value of the handshake, decoded as latin-1."""
    return [bytes(value).decode("latin-1") for key, value in scope.get("headers", ()) if key == b"host"]


def effective_allowed_hosts(allowed_hosts: Sequence[str], debug: bool) -> list[str]:
    """ALLOWED_HOSTS as Django applies it: localhost variants when empty under DEBUG."""
    if debug and not allowed_hosts:
        return list(DEBUG_ALLOWED_HOSTS)
    return list(allowed_hosts)


def host_allowed(host: str | None, allowed_hosts: Sequence[str]) -> bool:
    """Whether a handshake's ``Host`` header (port allowed) matches ``allowed_hosts``.

    A missing or malformed host is refused; the port is ignored, as Django does.
    """
    if host is None:
        return False
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, list(allowed_hosts))


@functools.lru_cache(maxsize=VERDICT_CACHE_SIZE)
def cached_host_allowed(host: str | None, allowed_hosts: tuple[str, ...], debug: bool) -> bool:
    """:func:`host_allowed` under ``ALLOWED_HOSTS``/``DEBUG`` as given, remembered per process.

    A process sees a handful of ``Host`` values; the settings are part of the
    key, so a changed setting is never answered from an old verdict. At most
    :data:`VERDICT_CACHE_SIZE` verdicts, the least recently used dropped first.
    """
    return host_allowed(host, effective_allowed_hosts(allowed_hosts, debug))


class HostValidator:
    """Refuses WebSocket handshakes whose ``Host`` is not in ALLOWED_HOSTS with 403.

    A handshake with no ``Host`` header, or with more than one, is refused too.
    Other scope types pass through unchanged (the ws service's HTTP side is
    health probes only, which must answer whatever host the orchestrator uses).

    As the outermost WebSocket middleware it also stamps the scope with the
    time the handshake arrived, so ``ws_handshake_seconds`` measures
    everything up to the accept/refuse decision. That stamped copy is the
    connection's own scope: the middlewares inside add their keys to it.

    It hands an accepted handshake over (:func:`~ws_service.asgi_types.hands_over`):
    nothing of it stays on the connection's call stack.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    @hands_over
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "websocket":
            return self.inner(scope, receive, send)
        scope = metrics.handshake_started(scope)
        hosts = _host_headers(scope)
        host = hosts[0] if len(hosts) == 1 else None
        if cached_host_allowed(host, tuple(settings.ALLOWED_HOSTS), settings.DEBUG):
            return self.inner(scope, receive, send)
        logger.warning("refused WebSocket handshake: host %r not in ALLOWED_HOSTS", hosts)
        metrics.handshake_decided(scope, metrics.OUTCOME_HOST_REFUSED)
        return deny_handshake(scope, receive, send, "WebSocket refused: Host is not in DJANGO_ALLOWED_HOSTS")
