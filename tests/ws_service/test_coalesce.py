"""ws_service.coalesce: calls arriving together share one batch; each gets its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ws_service.coalesce import Coalescer


class Doubler:
    """A batch function that records its batches; it can be told to fail or to wait."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail_next = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("down")
        return [item * 2 for item in items]


async def test_a_lone_call_runs_at_once_in_a_batch_of_its_own() -> None:
    doubler = Doubler()
    coalescer = Coalescer(doubler, "test")
    assert await coalescer(21) == 42
    assert doubler.batches == [[21]]


async def test_calls_arriving_together_share_a_batch_and_each_gets_its_own_result() -> None:
    doubler = Doubler()
    coalescer = Coalescer(doubler, "test")
    results = await asyncio.gather(*(coalescer(i) for i in range(100)))
    assert results == [i * 2 for i in range(100)]
    assert doubler.batches == [list(range(100))]
    assert coalescer.batches == 1


async def test_calls_during_a_batch_in_flight_go_together_in_the_next_one() -> None:
    doubler = Doubler()
    doubler.gate = asyncio.Event()
    coalescer = Coalescer(doubler, "test")
    first = asyncio.ensure_future(coalescer(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(coalescer(i)) for i in range(2, 12)]
    await asyncio.sleep(0)
    doubler.gate.set()
    assert await first == 2
    assert await asyncio.gather(*later) == [i * 2 for i in range(2, 12)]
    assert doubler.batches == [[1], list(range(2, 12))]


async def test_a_failed_batch_fails_each_of_its_calls_and_the_next_batch_works() -> None:
    doubler = Doubler()
    doubler.fail_next = True
    coalescer = Coalescer(doubler, "test")
    failed = await asyncio.gather(*(coalescer(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in failed)
    assert await coalescer(7) == 14


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    doubler = Doubler()
    doubler.gate = asyncio.Event()
    coalescer = Coalescer(doubler, "test")
    calls = [asyncio.ensure_future(coalescer(i)) for i in range(3)]
    await asyncio.sleep(0)
    calls[1].cancel()
    doubler.gate.set()
    assert await calls[0] == 0
    assert await calls[2] == 4
    with pytest.raises(asyncio.CancelledError):
        await calls[1]
