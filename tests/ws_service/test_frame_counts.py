"""Frame counts reach their Prometheus counters once per event-loop iteration, not with a locked ``inc()`` per frame."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.support.communicators import connect_user, receive_message, send_message
from ws_service import metrics
from ws_service.metrics import LoopCounts


class Recorded:
    """A labelled counter of its own registry, recording the amount of every ``inc``."""

    def __init__(self) -> None:
        self.child = Counter("frames", "test", ["type"], registry=CollectorRegistry()).labels("ping")
        self.amounts: list[float] = []
        original = self.child.inc

        def inc(amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
            self.amounts.append(amount)
            original(amount, exemplar)

        self.child.inc = inc  # type: ignore[method-assign]  # record, then count

    @property
    def value(self) -> float:
        return float(self.child._value.get())


async def test_the_counts_of_one_iteration_reach_the_counter_in_one_inc() -> None:
    counts, counter = LoopCounts(), Recorded()
    for _ in range(100):
        counts.add(counter.child)
    assert counter.value == 0  # not yet: handed over when the loop gets back to its callbacks
    await asyncio.sleep(0)
    assert counter.value == 100
    assert counter.amounts == [100]


def test_a_count_outside_a_running_loop_reaches_the_counter_at_once() -> None:
    counts, counter = LoopCounts(), Recorded()
    counts.add(counter.child)
    assert counter.value == 1


def test_a_loop_closed_before_its_hand_over_holds_no_count_back() -> None:
    counts, counter = LoopCounts(), Recorded()

    async def count_and_stop() -> None:
        counts.add(counter.child)  # schedules the hand-over for the loop's next iteration
        asyncio.get_running_loop().stop()  # which never comes: the loop stops after this one and closes

    closed = asyncio.new_event_loop()
    try:
        closed.run_until_complete(count_and_stop())
    finally:
        closed.close()
    assert counter.value == 0

    async def count_and_yield() -> None:
        counts.add(counter.child)  # on a new loop: schedules its own hand-over
        await asyncio.sleep(0)

    asyncio.run(count_and_yield())
    assert counter.value == 2


@pytest.mark.django_db(transaction=True)
async def test_a_burst_of_requests_handled_in_one_iteration_is_counted_with_one_inc_each_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    communicator, _, _ = await connect_user("counted")
    amounts: dict[str, list[float]] = {"received": [], "sent": []}
    for name, child in (("received", metrics.RECEIVED["ping"]), ("sent", metrics.SENT["pong"])):
        original = child.inc

        def inc(amount: float = 1, *, record: list[float] = amounts[name], original: Any = original) -> None:
            record.append(amount)
            original(amount)

        monkeypatch.setattr(child, "inc", inc)
    for n in range(20):  # queued before the consumer runs: it handles all 20 in one step of its task
        await send_message(communicator, {"type": "ping", "ref": str(n)})
    assert [(await receive_message(communicator))["ref"] for _ in range(20)] == [str(n) for n in range(20)]
    await asyncio.sleep(0)
    assert amounts == {"received": [20], "sent": [20]}
    await communicator.disconnect()
