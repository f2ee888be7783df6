"""Readiness checks shared by both services.

Each check is an async callable that raises on failure; :func:`run_checks`
runs them concurrently, each under its own timeout, and reports per-check
results with a fixed word (``unavailable``, ``timed out``), never exception
text: the detail goes to the log.

Probes cost one check per process however many arrive: concurrent calls share
the check in flight (single flight), and a result is reused for
``HEALTH_CHECK_CACHE_SECONDS``. The database check keeps one PostgreSQL
connection of its own (``application_name=readiness``), used from one
dedicated thread and reopened only after a failure: a probe never opens a
backend per request, and a hung database cannot stall the service's other ORM
calls. PostgreSQL's ``connect_timeout`` and ``tcp_user_timeout`` bound that
thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

from shared.redis_client import new_probe_client

logger = logging.getLogger("shared.health")

Check = Callable[[], Awaitable[None]]
Result = tuple[bool, dict[str, Any]]

APPLICATION_NAME = "readiness"
UNAVAILABLE = "unavailable"
TIMED_OUT = "timed out"


class _DatabaseProbe:
    """One PostgreSQL connection for readiness, only ever used on its own thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readiness-db")
        self._connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        params = connections["default"].get_connection_params()
        params.pop("cursor_factory", None)  # Django's cursor class expects Django's wrapper
        params.pop("context", None)
        params["application_name"] = APPLICATION_NAME
        # Unacknowledged data (a vanished server) fails the socket within the probe's budget.
        params["tcp_user_timeout"] = int(settings.HEALTH_CHECK_TIMEOUT * 1000)
        connection: psycopg.Connection[Any] = psycopg.connect(**params, autocommit=True)
        return connection

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _select_one(self) -> None:
        reused = self._connection is not None
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = self._connect()
            try:
                self._connection.execute("SELECT 1").fetchone()
                return
            except psycopg.Error:
                self._close()
                # A kept connection may have died with a database restart: one fresh try.
                if attempt == 2 or not reused:
                    raise

    async def check(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._select_one)


_database = _DatabaseProbe()


async def check_database() -> None:
    """``SELECT 1`` on the default database, over the probe's own kept connection."""
    await _database.check()


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


async def _timed(name: str, check: Check, budget: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), budget)
    except TimeoutError:
        logger.warning("readiness check %s timed out after %gs", name, budget)
        return {"ok": False, "error": TIMED_OUT}
    except Exception as exc:  # a readiness probe reports every failure, it never raises
        logger.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
        return {"ok": False, "error": UNAVAILABLE}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


async def _run_now(checks: Mapping[str, Check]) -> Result:
    timeout: float = settings.HEALTH_CHECK_TIMEOUT
    names = list(checks)
    results = await asyncio.gather(*(_timed(name, checks[name], timeout) for name in names))
    by_name = dict(zip(names, results, strict=True))
    ok = all(result["ok"] for result in results)
    return ok, {"status": "ok" if ok else UNAVAILABLE, "checks": by_name}


# Last result per set of checks: (monotonic time it was taken, result).
_results: dict[tuple[str, ...], tuple[float, Result]] = {}
# The run in flight per event loop and set of checks (a task belongs to one loop).
_in_flight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], asyncio.Task[Result]]] = (
    weakref.WeakKeyDictionary()
)


def clear_cache() -> None:
    """Forget cached results (tests that change what the checks reach)."""
    _results.clear()


async def run_checks(checks: Mapping[str, Check]) -> Result:
    """Run ``checks`` concurrently; ``(all_ok, response_body)``, shared by concurrent and recent callers."""
    key = tuple(checks)
    cached = _results.get(key)
    max_age: float = settings.HEALTH_CHECK_CACHE_SECONDS
    if cached is not None and time.monotonic() - cached[0] < max_age:
        return cached[1]
    running = _in_flight.setdefault(asyncio.get_running_loop(), {})
    task = running.get(key)
    if task is None:
        task = asyncio.ensure_future(_run_now(checks))
        running[key] = task

        def _done(finished: asyncio.Task[Result]) -> None:
            running.pop(key, None)
            if not finished.cancelled() and finished.exception() is None:
                _results[key] = (time.monotonic(), finished.result())

        task.add_done_callback(_done)
    # Shielded: a caller that goes away (client disconnect) does not cancel the others' check.
    return await asyncio.shield(task)
