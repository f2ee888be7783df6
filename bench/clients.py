"""Load-generator processes: each its own uvloop event loop and its own share of the connections.

The parent (``bench.loadgen``) sends commands over a pipe; each returns one
reply (``arm`` returns two: armed, then the deliveries). Every wait is bounded.
Clients use ``websockets.asyncio.client.connect`` with compression off, no
client pings, a session cookie and an allowed Origin, and spread their source
addresses over 127.0.0.2.. (one port range per address) towards 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Origin

from bench.command_loop import CommandLoop, run
from bench.storm_client import StormReader

ORIGIN = Origin("http://127.0.0.1")
CLOSE_CONCURRENCY = 500


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    urls: tuple[str, ...]  # connection i goes to urls[i % len(urls)] (global index)
    count: int
    offset: int  # global index of this worker's first connection
    cookies: tuple[str, ...]
    source_ips: tuple[str, ...]
    concurrency: int  # handshakes in flight in this worker
    open_timeout: float  # handshake + welcome


@dataclass(slots=True)
class Worker(CommandLoop):
    spec: WorkerSpec
    pipe: Connection
    sockets: list[ClientConnection] = field(default_factory=list)
    storm: StormReader | None = None

    async def _open_one(self, index: int, gate: asyncio.Semaphore) -> tuple[ClientConnection | None, float, str]:
        spec = self.spec
        number = spec.offset + index
        async with gate:
            started = time.monotonic()
            ws: ClientConnection | None = None
            try:
                async with asyncio.timeout(spec.open_timeout):
                    ws = await connect(
                        spec.urls[number % len(spec.urls)],
                        origin=ORIGIN,
                        additional_headers={"Cookie": spec.cookies[number % len(spec.cookies)]},
                        compression=None,
                        proxy=None,
                        open_timeout=None,
                        ping_interval=None,
                        close_timeout=5,
                        max_queue=None,
                        local_addr=(spec.source_ips[number % len(spec.source_ips)], 0),
                    )
                    first = await ws.recv()
                if not isinstance(first, str) or '"welcome"' not in first:
                    raise RuntimeError(f"first frame is not a welcome: {first!r:.80}")
                return ws, time.monotonic() - started, ""
            except Exception as exc:
                if ws is not None:
                    ws.transport.abort()
                return None, time.monotonic() - started, f"{type(exc).__name__}: {exc}"[:160]

    async def open(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(self.spec.concurrency)
        started = time.monotonic()
        results = await asyncio.gather(*(self._open_one(i, gate) for i in range(self.spec.count)))
        ended = time.monotonic()
        self.sockets = [ws for ws, _, _ in results if ws is not None]
        errors = [error for _, _, error in results if error]
        return {
            "started": started,
            "ended": ended,
            "times": [elapsed for ws, elapsed, _ in results if ws is not None],
            "failures": len(errors),
            "error_samples": sorted(set(errors))[:3],
        }

    async def send_all(self, frame: str, expect: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Send ``frame`` on every socket (as many in flight as handshakes) and wait for a reply with ``expect``."""
        gate = asyncio.Semaphore(self.spec.concurrency)

        async def one(ws: ClientConnection) -> bool:
            try:
                async with gate, asyncio.timeout(timeout):
                    await ws.send(frame)
                    while True:
                        reply = await ws.recv()
                        if isinstance(reply, str) and expect in reply:
                            return True
            except (TimeoutError, ConnectionClosed):
                return False

        ok = await asyncio.gather(*(one(ws) for ws in self.sockets))
        return {"ok": sum(ok), "failures": len(ok) - sum(ok)}

    async def request_response(self, frame: str, duration: float) -> dict[str, Any]:
        """Closed loop on every socket for ``duration`` s: send, wait for the reply, repeat."""
        rtts: list[float] = []
        errors = 0
        deadline = time.monotonic() + duration

        async def loop(ws: ClientConnection) -> None:
            nonlocal errors
            try:
                while (sent := time.monotonic()) < deadline:
                    await ws.send(frame)
                    async with asyncio.timeout(max(1.0, deadline - sent + 5.0)):
                        reply = await ws.recv()
                    rtts.append(time.monotonic() - sent)
                    if isinstance(reply, str) and '"error"' in reply:
                        errors += 1
            except (TimeoutError, ConnectionClosed, OSError):
                errors += 1

        started = time.monotonic()
        await asyncio.gather(*(loop(ws) for ws in self.sockets))
        return {"rtts": rtts, "errors": errors, "elapsed": time.monotonic() - started}

    async def arm(self, tag: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Start a reader per socket for the frame containing ``tag``; reply "armed", then the receipt times."""
        deadline = time.monotonic() + timeout

        async def wait(ws: ClientConnection) -> float | None:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    while True:
                        frame = await ws.recv()
                        if isinstance(frame, str) and tag in frame:
                            return time.monotonic()
            except (TimeoutError, ConnectionClosed):
                return None

        tasks = [asyncio.ensure_future(wait(ws)) for ws in self.sockets]
        await asyncio.sleep(0)  # every reader is now inside recv()
        self.pipe.send({"armed": True})
        received = await asyncio.gather(*tasks)
        return {"times": [t for t in received if t is not None], "missing": sum(t is None for t in received)}

    async def check(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """How many sockets are still open and answer a protocol-level ping."""

        async def alive(ws: ClientConnection) -> bool:
            if ws.state is not State.OPEN:
                return False
            try:
                async with asyncio.timeout(timeout):
                    await (await ws.ping())
                return True
            except (TimeoutError, ConnectionClosed):
                return False

        results = await asyncio.gather(*(alive(ws) for ws in self.sockets))
        return {"alive": sum(results), "dropped": len(results) - sum(results)}

    async def storm_subscribe(self, frame: str, tags: tuple[str, ...], timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Subscribe storm (``bench.storm_client``): readers on every socket, every ``frame`` sent at once."""
        if self.storm is not None:
            await self.storm.stop()
        self.storm = StormReader(self.sockets, tags)
        return await self.storm.subscribe(frame, timeout)

    async def storm_settle(self, tag: str, quiet: float, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        if self.storm is None:
            raise RuntimeError("no storm running")
        return await self.storm.settle(tag, quiet, timeout)

    async def storm_finish(self, tag: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        if self.storm is None:
            raise RuntimeError("no storm running")
        storm, self.storm = self.storm, None
        return await storm.finish(tag, timeout)

    async def ping(self) -> dict[str, Any]:
        """Started and listening (so a measured command starts in every process at once)."""
        return {}

    async def close(self) -> dict[str, Any]:
        if self.storm is not None:
            await self.storm.stop()
            self.storm = None
        gate = asyncio.Semaphore(CLOSE_CONCURRENCY)

        async def one(ws: ClientConnection) -> None:
            async with gate:
                try:
                    await ws.close()
                except Exception:
                    ws.transport.abort()

        await asyncio.gather(*(one(ws) for ws in self.sockets))
        closed, self.sockets = len(self.sockets), []
        return {"closed": closed}


def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    """Entry point of a client process."""
    run(Worker(spec, pipe))
