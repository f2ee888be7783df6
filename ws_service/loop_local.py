"""One instance per running event loop: the ws process's helpers (one loop per process, one per test)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable


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
