"""The lean receive queue and flag the launcher gives Daphne's and Uvicorn's connections (ws_service.receive_queue)."""

from __future__ import annotations

import asyncio

import pytest

from ws_service.receive_queue import Flag, ReceiveQueue

WAIT = 2.0


async def test_messages_come_out_in_order_and_get_waits_for_one() -> None:
    queue = ReceiveQueue()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert queue.qsize() == 2
    assert await queue.get() == 1
    assert queue.get_nowait() == 2
    assert queue.empty()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put_nowait(3)
    assert await asyncio.wait_for(waiting, WAIT) == 3
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()


def test_a_queue_is_never_falsy() -> None:
    """Daphne tests ``if self.application_queue:`` before putting into it."""
    assert ReceiveQueue()


async def test_getters_are_served_in_the_order_they_came() -> None:
    queue = ReceiveQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert list(await asyncio.wait_for(asyncio.gather(first, second), WAIT)) == ["a", "b"]


async def test_a_getter_cancelled_after_its_wake_up_passes_it_on() -> None:
    queue = ReceiveQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")  # wakes the first getter...
    first.cancel()  # ...which is cancelled before it runs: the message goes to the second
    assert await asyncio.wait_for(second, WAIT) == "only"
    assert first.cancelled()
    assert queue.empty()


async def test_a_getter_cancelled_while_waiting_leaves_nothing_behind() -> None:
    queue = ReceiveQueue()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    queue.put_nowait("kept")
    assert await asyncio.wait_for(queue.get(), WAIT) == "kept"


async def test_a_flag_wakes_its_waiters_when_set() -> None:
    flag = Flag(value=True)
    assert await flag.wait()
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), WAIT) == [True, True, True]
    assert flag.is_set()


async def test_a_cancelled_flag_waiter_is_forgotten() -> None:
    flag = Flag()
    waiting = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    flag.set()
    assert await flag.wait()
