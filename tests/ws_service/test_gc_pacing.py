"""The garbage collector's pacer (``ws_service.gc_pacing``) on this test's event loop and this process's collector.

Each test installs its own pacer and uninstalls it (restoring the threshold);
the collections it runs are real ones, counted by ``gc.get_stats()``.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable, Iterator

import pytest

from ws_service.gc_pacing import HELD_THRESHOLD, GcPacer
from ws_service.registry import Registry

QUIET = 0.2


def _full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


@pytest.fixture
def pacer() -> Iterator[GcPacer]:
    threshold = gc.get_threshold()
    pacer = GcPacer(quiet_seconds=QUIET, hold_seconds=1.0, min_growth=10)
    pacer.install()
    yield pacer
    pacer.uninstall()
    assert gc.get_threshold() == threshold


async def _add(pacer: GcPacer, count: int, start: int = 0, pause: float = 0.0) -> None:
    for n in range(start + 1, start + count + 1):
        pacer.changed(n, added=True)
        if pause:
            await asyncio.sleep(pause)


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Until ``condition()`` holds, polled every 20 ms, at most ``seconds``."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


async def _until_released(pacer: GcPacer) -> None:
    await _until(lambda: pacer.holding_since is None)


async def test_a_burst_holds_full_collections_and_ends_with_one_planned(pacer: GcPacer) -> None:
    old = gc.get_threshold()[2]
    await _add(pacer, 9)
    assert pacer.holding_since is None  # below the minimum growth
    await _add(pacer, 100, start=9)
    assert pacer.holding_since is not None
    assert gc.get_threshold()[2] == HELD_THRESHOLD
    before = _full_collections()
    await asyncio.sleep(QUIET / 2)
    await _add(pacer, 5, start=109)  # still growing: the hold goes on past its first check
    await asyncio.sleep(QUIET * 0.75)
    assert pacer.holding_since is not None
    await _until_released(pacer)
    assert pacer.holding_since is None
    assert gc.get_threshold()[2] == old
    assert pacer.planned == 1
    assert _full_collections() == before + 1
    assert pacer.open_at_full == 114


async def test_a_hold_ends_after_hold_seconds_while_connections_keep_coming(pacer: GcPacer) -> None:
    started = time.monotonic()
    task = asyncio.create_task(_add(pacer, 300, pause=0.01))  # 3 s or more of adds, never quiet
    await _until(lambda: pacer.holding_since is not None, 2.0)
    assert pacer.holding_since is not None
    await _until(lambda: pacer.planned > 0)
    assert pacer.planned == 1
    assert time.monotonic() - started < pacer.hold_seconds + 1.5  # a loaded machine's timer may fire late
    assert not task.done()  # the first planned collection came while connections were still being added
    await task
    await _until_released(pacer)
    assert pacer.planned >= 2  # one per hold_seconds while adds go on, the last at the end


async def test_churn_collects_once_an_eighth_of_the_connections_closed_without_a_hold(pacer: GcPacer) -> None:
    await _add(pacer, 800)
    await _until_released(pacer)
    assert pacer.open_at_full == 800
    for _ in range(99):  # churn: one closes, one opens; an eighth of 800 is 100
        pacer.changed(799, added=False)
        pacer.changed(800, added=True)
    await asyncio.sleep(0.05)
    assert pacer.planned == 1
    pacer.changed(799, added=False)
    assert pacer.holding_since is None  # churn never holds the collector
    await _until(lambda: pacer.planned == 2)
    assert pacer.planned == 2
    assert pacer.closed_since == 0


class _Cycle:
    """A connection's state in a reference cycle: only a full collection frees it."""

    def __init__(self) -> None:
        self.me = self


async def test_survivors_of_a_planned_collection_are_frozen_and_closes_collect_their_cycles(pacer: GcPacer) -> None:
    frozen_before = gc.get_freeze_count()
    connections = [_Cycle() for _ in range(100)]
    await _add(pacer, 100)
    await _until_released(pacer)
    assert pacer.frozen
    assert gc.get_freeze_count() >= frozen_before + 100  # CPython's own full collections now skip them
    gone = [weakref.ref(connection) for connection in connections[:13]]
    del connections[:13]
    gc.collect()
    assert all(ref() is not None for ref in gone)  # frozen: a full collection does not walk them
    for n in range(13):  # an eighth of 100 (at least min_growth 10) closed
        pacer.changed(99 - n, added=False)
    await _until(lambda: pacer.planned == 2)
    assert pacer.planned == 2
    assert all(ref() is None for ref in gone)  # unfrozen, collected, the rest frozen again
    assert pacer.frozen


async def test_a_natural_full_collection_moves_the_baseline(pacer: GcPacer) -> None:
    pacer.changed(50, added=False)
    gc.collect()
    assert pacer.open_at_full == 50
    await _add(pacer, 9, start=50)
    assert pacer.holding_since is None


async def test_not_installed_it_never_holds() -> None:
    pacer = GcPacer(quiet_seconds=QUIET, min_growth=1)
    await _add(pacer, 100)
    assert pacer.holding_since is None
    assert pacer.open == 100


async def test_the_registry_reports_adds_and_removals(pacer: GcPacer) -> None:
    class Connection:
        async def drain(self) -> None:
            return None

    registry = Registry(gc_pacer=pacer)
    connections = [Connection() for _ in range(12)]
    for connection in connections:
        registry.add(connection)
    assert pacer.open == 12
    assert pacer.holding_since is not None
    registry.discard(connections[0])
    assert pacer.open == 11
    await _until_released(pacer)
    assert pacer.planned == 1
