"""Cross-site WebSocket hijacking protection: validate the handshake's Origin."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from ws_service import metrics
from ws_service.asgi_types import ASGIApp, Receive, Scope, Send, deny_handshake, header

logger = logging.getLogger("ws.origin")


def _normalise(origin: str) -> tuple[str, str, str] | None:
    """``(scheme, host, "scheme://netloc")`` of a usable origin, else ``None``."""
    try:
        parts = urlsplit(origin.strip().lower())
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not hostname:
        return None
    host = f"[{hostname}]" if ":" in hostname else hostname
    return parts.scheme, host, f"{parts.scheme}://{parts.netloc}"


def _trusted(scheme: str, netloc_origin: str, trusted_origins: Sequence[str]) -> bool:
    """Exact match, or Django's ``scheme://*.example.com`` subdomain wildcard."""
    for trusted in trusted_origins:
        trusted = trusted.lower()
        if trusted == netloc_origin:
            return True
        prefix = f"{scheme}://*."
        if trusted.startswith(prefix):
            suffix = trusted[len(prefix) - 1 :]  # ".example.com[:port]"
            if netloc_origin.endswith(suffix):
                return True
    return False


def origin_allowed(origin: str | None, allowed_hosts: Sequence[str], trusted_origins: Sequence[str]) -> bool:
    """Whether a handshake from ``origin`` may proceed.

    Missing and ``null`` origins are refused (browsers always send one; a
    sandboxed or ``file:`` page sends ``null``). An origin is allowed when it
    is in CSRF_TRUSTED_ORIGINS or its host is in ALLOWED_HOSTS.
    """
    if origin is None or origin.strip().lower() == "null":
        return False
    parsed = _normalise(origin)
    if parsed is None:
        return False
    scheme, host, netloc_origin = parsed
    return _trusted(scheme, netloc_origin, trusted_origins) or validate_host(host, list(allowed_hosts))


class OriginValidator:
    """Refuses WebSocket handshakes from missing, ``null`` or foreign origins with 403."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.inner(scope, receive, send)
            return
        origin = header(scope, b"origin")
        if origin_allowed(origin, settings.ALLOWED_HOSTS, settings.CSRF_TRUSTED_ORIGINS):
            await self.inner(scope, receive, send)
            return
        logger.warning("refused WebSocket handshake: origin %r not allowed", origin)
        metrics.handshake_decided(scope, metrics.OUTCOME_ORIGIN_REFUSED)
        await deny_handshake(receive, send)
