"""``LoopLocal``: one instance per running event loop, whichever loop asked last."""

from __future__ import annotations

import asyncio
import gc
import itertools

from ws_service.loop_local import LoopLocal


def test_each_loop_gets_its_own_instance_and_keeps_it() -> None:
    counter = itertools.count()
    local: LoopLocal[int] = LoopLocal(lambda: next(counter))

    async def twice() -> tuple[int, int]:
        return local.get(), local.get()

    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(twice()) == (0, 0)
        assert second.run_until_complete(twice()) == (1, 1)  # not the first loop's (the last one asked)
        assert first.run_until_complete(twice()) == (0, 0)  # and back: still its own
    finally:
        first.close()
        second.close()
    del first, second
    gc.collect()
    third = asyncio.new_event_loop()
    try:
        assert third.run_until_complete(twice()) == (2, 2)  # a new loop (even at a reused address) starts afresh
    finally:
        third.close()
