"""One instance per running event loop: the ws process's helpers (one loop per process, one per test)."""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable, Coroutine
from typing import Any


class LoopLocal[T]:
    """``get()`` returns this loop's instance, made by ``factory`` on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()
        # The last loop asked for and its instance: a process has one loop, so the common
        # ``get()`` is an identity check, not a weak-dictionary lookup (which makes a weakref).
        self._last_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._last: T | None = None

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        last_loop = self._last_loop
        if last_loop is not None and last_loop() is loop:
            return self._last  # type: ignore[return-value]  # set together with _last_loop
        instance = self._instances.get(loop)
        if instance is None:
            instance = self._instances[loop] = self._factory()
        self._last_loop, self._last = weakref.ref(loop), instance
        return instance


def process_task[R](coroutine: Coroutine[Any, Any, R], name: str) -> asyncio.Task[R]:
    """A task of the whole process (node, monitors, batching), started with an empty context.

    ``asyncio.create_task`` copies the caller's context, and these tasks are
    started by whichever connection needs them first: without this, every
    record they log (and every task they start) would carry that connection's
    id and user (``shared.log_context``, ``shared.current_user``).
    """
    return asyncio.create_task(coroutine, name=name, context=contextvars.Context())
