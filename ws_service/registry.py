"""The live connections of this ws process, and whether it is draining.

Used to drain on SIGTERM (close every connection with 1012, let each clean up).
Group memberships are the node's (``ws_service.node``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from prometheus_client import Gauge

from ws_service import metrics
from ws_service.gc_pacing import GcPacer, pacer


class LiveConnection(Protocol):
    async def drain(self) -> None:
        """Close with 1012; cleanup runs in the consumer's disconnect handler."""


class Registry:
    """Connections register on connect and unregister when their cleanup is done.

    The process's registry reports its size in ``ws_connections_open`` and a
    drain in ``ws_drains_in_progress``, and tells the garbage collector's
    pacer (``ws_service.gc_pacing``); other instances (tests) pass neither.
    """

    def __init__(
        self, *, open_gauge: Gauge | None = None, drain_gauge: Gauge | None = None, gc_pacer: GcPacer | None = None
    ) -> None:
        self.connections: set[LiveConnection] = set()
        self.draining = False
        self._empty = asyncio.Event()
        self._empty.set()
        self._open_gauge = open_gauge
        self._drain_gauge = drain_gauge
        self._gc_pacer = gc_pacer

    def add(self, connection: LiveConnection) -> None:
        self.connections.add(connection)
        self._empty.clear()
        if self._open_gauge is not None:
            self._open_gauge.set(len(self.connections))
        if self._gc_pacer is not None:
            self._gc_pacer.changed(len(self.connections), added=True)

    def discard(self, connection: LiveConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._empty.set()
        if self._open_gauge is not None:
            self._open_gauge.set(len(self.connections))
        if self._gc_pacer is not None:
            self._gc_pacer.changed(len(self.connections), added=False)

    async def drain(self, grace: float, cleanup: Callable[[], Coroutine[Any, Any, None]] | None = None) -> bool:
        """Close every connection and wait for their cleanup; ``True`` if all finished in time.

        ``draining`` is set first (handshakes are refused). ``cleanup`` (the
        process's cleanup) then starts eagerly: what it marks before its first
        wait (what each connection's own cleanup may then skip) is marked
        before any close frame goes out, and its requests are sent, but the
        closes do not wait for its answers. Every close frame is then handed
        to its socket at once, in one synchronous pass (an eager task per
        connection: nothing waits between them). ``cleanup`` bounds its own
        duration (the launcher's by ``grace``); the drain waits for it too.
        """
        self.draining = True
        if self._drain_gauge is not None:
            self._drain_gauge.inc()
        # A fresh event of the running loop (an asyncio.Event belongs to the first loop that waits on it).
        self._empty = asyncio.Event()
        if not self.connections:
            self._empty.set()
        loop = asyncio.get_running_loop()
        try:
            cleaning: asyncio.Task[None] | None = (
                asyncio.eager_task_factory(loop, cleanup()) if cleanup is not None else None
            )
            closing = [asyncio.eager_task_factory(loop, connection.drain()) for connection in list(self.connections)]
            await asyncio.gather(*closing, return_exceptions=True)
            try:
                await asyncio.wait_for(self._empty.wait(), grace)
            except TimeoutError:
                return False
            finally:
                if cleaning is not None:  # started with the closes and bounded by its caller: done by now, or soon
                    await asyncio.gather(cleaning, return_exceptions=True)
            return True
        finally:
            if self._drain_gauge is not None:
                self._drain_gauge.dec()


registry = Registry(open_gauge=metrics.CONNECTIONS_OPEN, drain_gauge=metrics.DRAINS_IN_PROGRESS, gc_pacer=pacer)
