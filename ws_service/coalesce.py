"""Calls that arrive together share one Redis round trip: per process, not per connection.

A :class:`Coalescer` wraps a function that does a whole batch in one round
trip (a pipeline). The first call starts a round trip at once, alone; calls
arriving while it is in flight wait for the next one, which carries all of
them. So a quiet process pays no extra latency, and a storm of N connects,
subscribes or disconnects costs a few round trips instead of N.

Each call still gets its own result, or the exception its batch raised; a
cancelled caller just stops waiting (its item is still sent, as a call that
had already started would have been).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from ws_service.loop_local import process_task


class Coalescer[T, R]:
    """``await coalescer(item)`` runs ``run_many`` on the batch the item is part of."""

    def __init__(self, run_many: Callable[[Sequence[T]], Awaitable[Sequence[R]]], name: str) -> None:
        self._run_many = run_many
        self._name = name
        self._queued: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None
        #: Round trips made, for tests and curiosity.
        self.batches = 0

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = process_task(self._run(), self._name)
        return await future

    async def _run(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                results = await self._run_many([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch + self._queued:
                    future.cancel()
                raise
            except Exception as exc:  # every call of the batch fails as its own call would have
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
