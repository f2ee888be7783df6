"""Cross-site WebSocket hijacking protection: validate the handshake's Origin.

An origin is trusted only when its scheme, host and port are exactly those of

* the handshake's own origin: the ``Host`` header with the scheme the client
  used (``ws`` → ``http``, ``wss`` → ``https``), or
* an entry of ``CSRF_TRUSTED_ORIGINS``, where ``scheme://*.example.com``
  also covers ``example.com`` and every subdomain, as Django's CSRF check does.

Default ports compare equal whether written or not (``http://a`` is
``http://a:80``). ``ALLOWED_HOSTS`` plays no part: it says which hosts this
server answers for, not which pages may open sockets with the user's cookie,
so ``*`` there never trusts every origin.

The scheme is ``scope["scheme"]``. Behind the proxy (``WS_PROXY_HEADERS``)
the launcher's trusted-proxy middleware sets it from ``X-Forwarded-Proto`` on
both servers, and only for peers in ``FORWARDED_ALLOW_IPS``
(:mod:`shared.forwarded`); the header itself is never read here, so no other
peer can choose the scheme. Without a scheme (Daphne, directly) it is ``ws``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from ws_service import metrics
from ws_service.asgi_types import ASGIApp, Receive, Scope, Send, deny_handshake, hands_over, header

logger = logging.getLogger("ws.origin")

DEFAULT_PORTS = {"http": 80, "https": 443}
# The http(s) scheme of a page for each WebSocket (or forwarded) scheme.
PAGE_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}
# Verdicts kept per process: a client choosing Origin/Host headers evicts older ones, never grows it.
VERDICT_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Origin:
    """A web origin with its port made explicit."""

    scheme: str
    host: str
    port: int


def parse_origin(value: str | None) -> Origin | None:
    """The origin in ``value`` (``scheme://host[:port]``), or ``None`` if it is not an http(s) origin.

    ``null``, opaque schemes, user info, paths, queries and fragments are not origins.
    """
    if not value:
        return None
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    hostname = parts.hostname
    if parts.scheme not in DEFAULT_PORTS or not hostname or "@" in parts.netloc:
        return None
    if parts.path or parts.query or parts.fragment:
        return None
    return Origin(parts.scheme, hostname, port if port is not None else DEFAULT_PORTS[parts.scheme])


def _matches_trusted(origin: Origin, trusted: str) -> bool:
    """``origin`` equals ``trusted``, or falls under its ``scheme://*.domain`` wildcard."""
    wildcard = "://*." in trusted
    pattern = parse_origin(trusted.replace("://*.", "://", 1) if wildcard else trusted)
    if pattern is None or (pattern.scheme, pattern.port) != (origin.scheme, origin.port):
        return False
    if wildcard:
        return origin.host == pattern.host or origin.host.endswith("." + pattern.host)
    return origin.host == pattern.host


def request_scheme(scope: Scope) -> str:
    """The page scheme (``http``/``https``) matching how the client reached this server."""
    scheme = scope.get("scheme")
    return PAGE_SCHEMES.get(str(scheme or "ws").lower(), "http")


def own_origin(scope: Scope) -> Origin | None:
    """The handshake's own origin: its ``Host`` header with the request scheme."""
    return host_origin(request_scheme(scope), header(scope, b"host"))


def host_origin(scheme: str, host: str | None) -> Origin | None:
    """The origin of a page reached with ``scheme`` at ``host`` (a ``Host`` header value)."""
    if host is None:
        return None
    return parse_origin(f"{scheme}://{host}")


def origin_allowed(origin: str | None, own: Origin | None, trusted_origins: Sequence[str]) -> bool:
    """Whether a handshake from ``origin`` may proceed.

    Missing and ``null`` origins are refused (browsers always send one; a
    sandboxed or ``file:`` page sends ``null``).
    """
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    return parsed == own or any(_matches_trusted(parsed, trusted.lower()) for trusted in trusted_origins)


@functools.lru_cache(maxsize=VERDICT_CACHE_SIZE)
def cached_origin_allowed(origin: str | None, scheme: str, host: str | None, trusted_origins: tuple[str, ...]) -> bool:
    """:func:`origin_allowed` for a handshake's ``Origin``, page scheme and ``Host``, remembered per process.

    ``CSRF_TRUSTED_ORIGINS`` is part of the key, so a changed setting is never
    answered from an old verdict. At most :data:`VERDICT_CACHE_SIZE` verdicts,
    the least recently used dropped first.
    """
    return origin_allowed(origin, host_origin(scheme, host), trusted_origins)


def refusal_hint(origin: str | None, scope: Scope) -> str:
    """What a refused client should send instead (the 403's text)."""
    host = header(scope, b"host")
    own = f"{request_scheme(scope)}://{host}" if host else "this server's own origin"
    problem = "no Origin header" if origin is None else f"Origin {origin!r} is not allowed"
    return f"WebSocket refused: {problem}; send Origin: {own} (or one in DJANGO_CSRF_TRUSTED_ORIGINS)"


class OriginValidator:
    """Refuses WebSocket handshakes from missing, ``null`` or foreign origins with 403.

    It hands an accepted handshake over (:func:`~ws_service.asgi_types.hands_over`):
    nothing of it stays on the connection's call stack.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    @hands_over
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "websocket":
            return self.inner(scope, receive, send)
        origin = header(scope, b"origin")
        host = header(scope, b"host")
        if cached_origin_allowed(origin, request_scheme(scope), host, tuple(settings.CSRF_TRUSTED_ORIGINS)):
            return self.inner(scope, receive, send)
        logger.warning("refused WebSocket handshake: origin %r is neither this server's nor trusted", origin)
        metrics.handshake_decided(scope, metrics.OUTCOME_ORIGIN_REFUSED)
        return deny_handshake(scope, receive, send, refusal_hint(origin, scope))
