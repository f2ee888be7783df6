"""Readiness checks run once for concurrent callers, results are reused briefly, failures carry no detail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from django.test import override_settings

from shared.health import clear_cache, run_checks


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


class CountingCheck:
    """A check that takes ``seconds`` and counts how often it ran."""

    def __init__(self, seconds: float = 0.05, error: Exception | None = None) -> None:
        self.seconds = seconds
        self.error = error
        self.runs = 0

    async def __call__(self) -> None:
        self.runs += 1
        await asyncio.sleep(self.seconds)
        if self.error is not None:
            raise self.error


@override_settings(HEALTH_CHECK_CACHE_SECONDS=0)
async def test_concurrent_callers_share_one_run() -> None:
    check = CountingCheck()
    results = await asyncio.gather(*(run_checks({"counted": check}) for _ in range(50)))
    assert check.runs == 1
    assert all(ok for ok, _ in results)
    for _ in range(3):  # no cache: each sequential call runs the check
        await run_checks({"counted": check})
    assert check.runs == 4


@override_settings(HEALTH_CHECK_CACHE_SECONDS=5)
async def test_a_result_is_reused_for_the_cache_period() -> None:
    check = CountingCheck(seconds=0)
    for _ in range(20):
        ok, body = await run_checks({"counted": check})
        assert ok
        assert body["checks"]["counted"]["ok"] is True
    assert check.runs == 1


@override_settings(HEALTH_CHECK_CACHE_SECONDS=0)
async def test_a_caller_going_away_does_not_cancel_the_others_check() -> None:
    check = CountingCheck(seconds=0.2)
    first = asyncio.ensure_future(run_checks({"counted": check}))
    second = asyncio.ensure_future(run_checks({"counted": check}))
    await asyncio.sleep(0.05)
    first.cancel()
    ok, _ = await second
    assert ok
    assert check.runs == 1


@override_settings(HEALTH_CHECK_CACHE_SECONDS=0, HEALTH_CHECK_TIMEOUT=0.1)
async def test_failures_report_a_fixed_word_and_log_the_detail(caplog: pytest.LogCaptureFixture) -> None:
    failing = CountingCheck(seconds=0, error=RuntimeError("host 'db.internal' at 10.0.0.7 refused"))
    slow = CountingCheck(seconds=1)
    ok, body = await run_checks({"failing": failing, "slow": slow})
    assert not ok
    assert body == {
        "status": "unavailable",
        "checks": {"failing": {"ok": False, "error": "unavailable"}, "slow": {"ok": False, "error": "timed out"}},
    }
    assert "readiness check failing failed: RuntimeError: host 'db.internal' at 10.0.0.7 refused" in caplog.text
    assert "readiness check slow timed out" in caplog.text
