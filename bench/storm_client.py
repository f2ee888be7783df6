"""Client side of the subscribe storm: a reader on every socket counts each frame by type, with receipt times.

One ``StormReader`` per client process and storm: ``subscribe`` starts the
readers, sends every ``subscribe`` frame at once and waits for each reply;
``settle`` waits for the first tagged message on every socket and then for the
storm's traffic to stop; ``finish`` waits for the second tagged message and
stops the readers. Every wait is bounded by its timeout.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.command_loop import wait_until

FRAME_TYPE = re.compile(r'"type"\s*:\s*"([A-Za-z0-9_.]+)"')
POLL_SECONDS = 0.05


@dataclass(slots=True)
class StormReader:
    sockets: list[ClientConnection]
    tags: tuple[str, ...]  # frames containing one of these are the measured publishes, not storm traffic
    answered: list[bool] = field(init=False)
    subscribed_at: list[float] = field(default_factory=list)
    failures: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # storm frames by type (replies and tags excluded)
    deliveries: dict[str, list[float]] = field(init=False)
    last_storm_frame: float = 0.0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.answered = [False] * len(self.sockets)
        self.deliveries = {tag: [] for tag in self.tags}
        if not self.sockets:
            self.all_answered.set()

    def _answer(self, index: int, ok: bool, now: float) -> None:
        self.answered[index] = True
        if ok:
            self.subscribed_at.append(now)
        else:
            self.failures += 1
        if len(self.subscribed_at) + self.failures == len(self.sockets):
            self.all_answered.set()

    def _frame(self, index: int, frame: str | bytes, now: float) -> None:
        text = frame if isinstance(frame, str) else ""
        for tag in self.tags:
            if tag in text:
                self.deliveries[tag].append(now)
                return
        match = FRAME_TYPE.search(text)
        kind = match.group(1) if match else "unknown"
        if not self.answered[index] and kind in ("subscribed", "error"):
            self._answer(index, kind == "subscribed", now)
            return
        self.counts[kind] += 1
        self.last_storm_frame = now

    async def _read(self, index: int, ws: ClientConnection) -> None:
        try:
            while True:
                frame = await ws.recv()
                self._frame(index, frame, time.monotonic())
        except ConnectionClosed:
            self.counts["closed"] += 1
            if not self.answered[index]:
                self._answer(index, False, time.monotonic())

    async def subscribe(self, frame: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Readers on, every ``frame`` sent at once; when all replied (or ``timeout``): start, last reply, counts."""
        self.tasks = [asyncio.ensure_future(self._read(i, ws)) for i, ws in enumerate(self.sockets)]
        await asyncio.sleep(0)
        started = time.monotonic()
        sent = await asyncio.gather(*(ws.send(frame) for ws in self.sockets), return_exceptions=True)
        for index, outcome in enumerate(sent):
            if isinstance(outcome, BaseException) and not self.answered[index]:
                self._answer(index, False, time.monotonic())
        try:
            async with asyncio.timeout(timeout):
                await self.all_answered.wait()
        except TimeoutError:
            pass
        ok = len(self.subscribed_at)
        return {
            "started": started,
            "last": max(self.subscribed_at, default=float("nan")),
            "ok": ok,
            "failures": len(self.sockets) - ok,
        }

    async def _until(self, done: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        return await wait_until(done, timeout, POLL_SECONDS)

    async def settle(self, tag: str, quiet: float, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for ``tag`` on every subscribed socket, then for ``quiet`` s without a storm frame."""
        ok = len(self.subscribed_at)
        since = time.monotonic()  # quiet counts from here at the earliest: a coalesced diff may still be due

        def delivered_and_quiet() -> bool:
            silent = time.monotonic() - max(self.last_storm_frame, since)
            return len(self.deliveries[tag]) >= ok and silent >= quiet

        quiet_reached = await self._until(delivered_and_quiet, timeout)
        return {
            "times": list(self.deliveries[tag]),
            "counts": dict(self.counts),
            "last_storm_frame": self.last_storm_frame,
            "quiet": quiet_reached,
        }

    async def finish(self, tag: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for ``tag`` on every subscribed socket, stop the readers; the receipt times and all counts."""
        ok = len(self.subscribed_at)
        await self._until(lambda: len(self.deliveries[tag]) >= ok, timeout)
        await self.stop()
        return {"times": list(self.deliveries[tag]), "counts": dict(self.counts)}

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
