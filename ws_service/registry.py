"""The live connections of this ws process, and whether it is draining.

Used to drain on SIGTERM (close every connection with 1012, let each clean up)
and to restore channel-layer groups after Redis lost them.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class LiveConnection(Protocol):
    async def drain(self) -> None:
        """Close with 1012; cleanup runs in the consumer's disconnect handler."""

    async def rejoin_groups(self) -> None:
        """Add this connection to all its channel-layer groups again."""


class Registry:
    """Connections register on connect and unregister when their cleanup is done."""

    def __init__(self) -> None:
        self.connections: set[LiveConnection] = set()
        self.draining = False
        self._empty = asyncio.Event()
        self._empty.set()

    def add(self, connection: LiveConnection) -> None:
        self.connections.add(connection)
        self._empty.clear()

    def discard(self, connection: LiveConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self._empty.set()

    async def drain(self, grace: float) -> bool:
        """Close every connection and wait for their cleanup; ``True`` if all finished in time."""
        self.draining = True
        await asyncio.gather(*(connection.drain() for connection in list(self.connections)), return_exceptions=True)
        try:
            await asyncio.wait_for(self._empty.wait(), grace)
        except TimeoutError:
            return False
        return True


registry = Registry()
