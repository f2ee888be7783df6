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

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        instance = self._instances.get(loop)
        if instance is None:
            instance = self._instances[loop] = self._factory()
        return instance


def process_task[R](coroutine: Coroutine[Any, Any, R], name: str) -> asyncio.Task[R]:
    """A task of the whole process (node, monitors, batching), started with an empty context.

    ``asyncio.create_task`` copies the caller's context, and these tasks are
    started by whichever connection needs them first: without this, every
    record they log (and every task they start) would carry that connection's
    id and user (``shared.log_context``, ``shared.current_user``).
    """
    return asyncio.create_task(coroutine, name=name, context=contextvars.Context())
