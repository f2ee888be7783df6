"""The ws service's HTTP side: only ``/healthz`` and ``/readyz``; 404 otherwise.

As on the web service, probes answer direct callers only: a request carrying
``X-Forwarded-For`` came through a reverse proxy and gets 404.
"""

from __future__ import annotations

import json
from typing import Any

from shared.health import check_channel_layer, check_database, run_checks
from ws_service.asgi_types import Receive, Scope, Send, header
from ws_service.registry import registry

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"


async def _respond(send: Send, status: int, body: dict[str, Any], *, head: bool) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else payload})


async def health_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Liveness makes no external calls; readiness checks the database and channel layer."""
    method = scope.get("method", "GET")
    path = scope.get("path", "").rstrip("/") or "/"
    head = method == "HEAD"
    proxied = header(scope, b"x-forwarded-for") is not None
    if method not in ("GET", "HEAD") or path not in (LIVENESS_PATH, READINESS_PATH) or proxied:
        await _respond(
            send, 404, {"error": "not_found", "detail": "only /healthz and /readyz are served here"}, head=head
        )
        return
    if path == LIVENESS_PATH:
        await _respond(send, 200, {"status": "ok"}, head=head)
        return
    if registry.draining:
        await _respond(send, 503, {"status": "draining", "checks": {}}, head=head)
        return
    ok, body = await run_checks({"database": check_database, "channel_layer": check_channel_layer})
    await _respond(send, 200 if ok else 503, body, head=head)
