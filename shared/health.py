"""Readiness checks shared by both services.

Each check is an async callable that raises on failure; :func:`run_checks`
runs them concurrently, each under its own timeout, and reports per-check
results. Database work runs in a thread outside the single "thread-sensitive"
executor, so a hung database cannot stall the service's other ORM calls, and
PostgreSQL's ``connect_timeout`` bounds the thread itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections, connection

from shared.redis_client import new_probe_client

Check = Callable[[], Awaitable[None]]


def _query_database() -> None:
    close_old_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # A health probe must not pin a connection in its worker thread.
        connection.close()


async def check_database() -> None:
    """``SELECT 1`` on the default database."""
    await sync_to_async(_query_database, thread_sensitive=False)()


async def check_redis() -> None:
    """``PING`` on the data Redis (``REDIS_URL``, or the Sentinel master) over a fresh connection."""
    client = new_probe_client(settings.HEALTH_CHECK_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def check_channel_layer() -> None:
    """A message sent to a fresh channel comes back through the channel layer."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    # A "specific." channel: channels-redis reads every such channel of this
    # process from one Redis list, so the message arrives even while open
    # connections hold the layer's receive lock (a private "health." list
    # would be read only once this probe got the lock: 503 under load).
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError(f"channel layer returned {message!r}")


async def _timed(check: Check, budget: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), budget)
    except TimeoutError:
        return {"ok": False, "error": f"timed out after {budget:g}s"}
    except Exception as exc:  # a readiness probe reports every failure, it never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


async def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, Any]]:
    """Run ``checks`` concurrently; ``(all_ok, response_body)``."""
    timeout: float = settings.HEALTH_CHECK_TIMEOUT
    names = list(checks)
    results = await asyncio.gather(*(_timed(checks[name], timeout) for name in names))
    by_name = dict(zip(names, results, strict=True))
    ok = all(result["ok"] for result in results)
    return ok, {"status": "ok" if ok else "unavailable", "checks": by_name}
