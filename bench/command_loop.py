"""The command loop every client process runs: a command arrives over the pipe, the method of its name answers.

``("exit",)`` closes the worker's sockets and ends the loop; any other
command ``(name, *arguments)`` awaits ``worker.name(*arguments)`` and sends
back what it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import uvloop


class CommandLoop:
    """Base of the client-process workers (``bench.clients.Worker``, ``bench.reconnect_client.ReconnectWorker``)."""

    __slots__ = ()
    pipe: Connection

    async def close(self) -> dict[str, Any]:
        raise NotImplementedError

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command: tuple[Any, ...] = await loop.run_in_executor(None, self.pipe.recv)
            name, arguments = command[0], command[1:]
            if name == "exit":
                await self.close()
                return
            handler = getattr(self, name)
            self.pipe.send(await handler(*arguments))


def run(worker: CommandLoop) -> None:
    """A client process's whole life: the worker's loop on uvloop until ``exit``."""
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C reaches the whole terminal group
        uvloop.run(worker.serve())


async def wait_until(done: Callable[[], bool], timeout: float, poll: float) -> bool:  # noqa: ASYNC109
    """Poll ``done`` every ``poll`` s; ``False`` if it is still false after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(poll)
    return True
