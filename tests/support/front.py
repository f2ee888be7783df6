"""One address for both services, routed like the compose proxy: ``/ws/`` to ws, the rest to web.

The documented client recipes talk to ``http://127.0.0.1:8000`` and
``ws://127.0.0.1:8000/ws/``, one origin. The tests' live servers listen on two
ports, so this router takes each TCP connection, reads its request line, and
splices it byte for byte to the ws service when the path starts with
``/ws/`` and to the web service otherwise (one upstream per connection, like a
client that opens a connection per command). Headers are untouched: both
services see the ``Host`` the client used, as behind the compose proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

HOST = "127.0.0.1"
REQUEST_LINE_LIMIT = 8192
SPLICE_CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(SPLICE_CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


class Front:
    """A router on a free loopback port, in a thread of its own."""

    def __init__(self, web_port: int, ws_port: int) -> None:
        self.web_port = web_port
        self.ws_port = ws_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="front", daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        parts = first.split(b" ")
        path = parts[1] if len(parts) > 1 else b"/"
        port = self.ws_port if path.startswith(b"/ws/") else self.web_port
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, port)
        except OSError:
            writer.close()
            return
        up_writer.write(first)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._handle, HOST, 0, limit=REQUEST_LINE_LIMIT)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def start(self) -> None:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextlib.contextmanager
def front(web_port: int, ws_port: int) -> Iterator[Front]:
    router = Front(web_port, ws_port)
    router.start()
    try:
        yield router
    finally:
        router.stop()
