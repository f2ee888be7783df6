"""Readiness follows Redis: 503 while it is stopped, 200 again once it returns.

It stops the shared Redis and always starts it again before it ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import DaphneServer, RedisServer

pytestmark = pytest.mark.slow


def _wait_for_status(url: str, expected: int, deadline_seconds: float) -> dict[str, object]:
    deadline = time.monotonic() + deadline_seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == expected:
                body: dict[str, object] = response.json()
                return body
            last = (response.status_code, response.text[:200])
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"{url} did not return {expected} within {deadline_seconds}s; last: {last!r}")


@pytest.fixture
def redis_restored(redis_server: RedisServer) -> Iterator[RedisServer]:
    yield redis_server
    if redis_server.process is None:
        redis_server.start()


def test_ws_readiness_tracks_redis_without_a_restart(
    ws_server: DaphneServer, web_server: DaphneServer, redis_restored: RedisServer
) -> None:
    ws_ready, web_ready = f"{ws_server.http_url}/readyz", f"{web_server.http_url}/readyz"
    _wait_for_status(ws_ready, 200, 10)
    ws_pid = ws_server.process.pid if ws_server.process else None

    redis_restored.stop()
    started = time.monotonic()
    body = _wait_for_status(ws_ready, 503, 10)
    assert time.monotonic() - started < 5  # each check is bounded by HEALTH_CHECK_TIMEOUT (2 s)
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["channel_layer"]["ok"] is False
    assert checks["database"]["ok"] is True
    assert httpx.get(f"{ws_server.http_url}/healthz", timeout=5).status_code == 200  # still alive
    web_body = _wait_for_status(web_ready, 503, 10)
    assert web_body["checks"]["redis"]["ok"] is False  # type: ignore[index]

    redis_restored.start()
    _wait_for_status(ws_ready, 200, 30)
    _wait_for_status(web_ready, 200, 30)
    assert ws_server.process is not None
    assert ws_server.process.pid == ws_pid
    assert ws_server.process.poll() is None
