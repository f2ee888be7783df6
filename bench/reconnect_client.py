"""Client side of the reconnect storm: the project's own Python client (``wsclient.WsClient``), as is.

One client process holds its share of the ``WsClient`` instances (one asyncio
task each, no threads), all subscribed to one topic. Each client keeps its
own reconnect loop: capped exponential backoff with full jitter, then
``subscribe`` again with ``since`` = the newest id seen, replay included
(``more_history`` continued). Event handlers record, per client and per
repetition, when it was disconnected, when its first ``subscribed`` reply
after that came, and when each measured message (by its text, a tag) was
emitted to the application, and how often.

Commands (each answers once; every wait is bounded): ``start`` (connect and
subscribe every client), ``arm`` (forget the last repetition), ``wait_back``
(until every client is back: resubscribed and holding every tag published
while the server was away), ``finish`` (until every client holds the final
tag; the repetition's figures), ``close``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench.clients import ORIGIN, WorkerSpec
from bench.command_loop import CommandLoop, run, wait_until
from wsclient import Event, WsClient

POLL_SECONDS = 0.1
CLOSE_CONCURRENCY = 500


def failure_kind(event: Event) -> str:
    """Why an attempt failed or a connection dropped: ``close <code>``, ``HTTP <status>`` or the error's class."""
    code, reason = event.get("code"), str(event.get("reason") or "")
    if isinstance(code, int):
        return f"close {code}"
    if reason.startswith("HTTP "):
        return reason.split(" at ")[0]
    return reason.split(":")[0] or "unknown"


@dataclass(slots=True)
class Tracked:
    """One client and what it went through in the current repetition."""

    client: WsClient
    prefix: str = ""  # texts starting with it are the repetition's measured messages
    disconnected: float | None = None
    resubscribed: float | None = None
    received: Counter[str] = field(default_factory=Counter)
    first_receipt: dict[str, float] = field(default_factory=dict)
    attempts_before: int = 0  # client.stats.disconnects at arm time
    resent_before: int = 0  # client.duplicates_dropped at arm time
    #: (when, why) of every failed attempt or drop in the repetition: the close code or the error's class.
    failures: list[tuple[float, str]] = field(default_factory=list)
    #: (when, delay) of every backoff sleep the client started in the repetition.
    sleeps: list[tuple[float, float]] = field(default_factory=list)
    welcomed: float | None = None  # the first welcome after the drop

    def arm(self, prefix: str) -> None:
        self.prefix = prefix
        self.disconnected = self.resubscribed = None
        self.received = Counter()
        self.first_receipt = {}
        self.attempts_before = self.client.stats.disconnects
        self.resent_before = self.client.duplicates_dropped
        self.failures = []
        self.sleeps = []
        self.welcomed = None

    def on_disconnected(self, event: Event) -> None:
        now = time.monotonic()
        if self.disconnected is None:
            self.disconnected = now
        if self.prefix:
            self.failures.append((now, failure_kind(event)))

    def on_reconnecting(self, event: Event) -> None:
        if self.prefix:
            self.sleeps.append((time.monotonic(), float(event.get("delay", 0.0))))

    def on_welcome(self, event: Event) -> None:
        if self.disconnected is not None and self.welcomed is None:
            self.welcomed = time.monotonic()

    def on_subscribed(self, event: Event) -> None:
        if self.disconnected is not None and self.resubscribed is None:
            self.resubscribed = time.monotonic()

    def on_message(self, event: Event) -> None:
        text = event.get("text")
        if isinstance(text, str) and self.prefix and text.startswith(self.prefix):
            self.received[text] += 1
            self.first_receipt.setdefault(text, time.monotonic())

    def back_at(self, missed: Sequence[str]) -> float | None:
        """When it was resubscribed and held every message in ``missed``; ``None`` if not (yet)."""
        if self.resubscribed is None or any(tag not in self.first_receipt for tag in missed):
            return None
        return max([self.resubscribed, *(self.first_receipt[tag] for tag in missed)])


@dataclass(slots=True)
class ReconnectWorker(CommandLoop):
    spec: WorkerSpec
    pipe: Connection
    clients: list[Tracked] = field(default_factory=list)

    def _client(self, number: int) -> Tracked:
        spec = self.spec
        cookie = spec.cookies[number % len(spec.cookies)]
        client = WsClient(
            spec.urls[number % len(spec.urls)],
            session_cookie=cookie,
            origin=ORIGIN,
            open_timeout=spec.open_timeout,
            ping_interval=None,  # as every benchmark client: no client pings
        )
        tracked = Tracked(client)
        client.on("disconnected", tracked.on_disconnected)
        client.on("subscribed", tracked.on_subscribed)
        client.on("message", tracked.on_message)
        client.on("reconnecting", tracked.on_reconnecting)
        client.on("welcome", tracked.on_welcome)
        return tracked

    async def start(self, topic: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Start every client (at most ``concurrency`` at once) and subscribe it to ``topic``."""
        gate = asyncio.Semaphore(self.spec.concurrency)

        async def one(index: int) -> tuple[Tracked, str]:
            tracked = self._client(self.spec.offset + index)
            async with gate:
                try:
                    async with asyncio.timeout(timeout):
                        await tracked.client.start()
                        await tracked.client.subscribe(topic)
                    return tracked, ""
                except Exception as exc:
                    await tracked.client.close()
                    return tracked, f"{type(exc).__name__}: {exc}"[:160]

        started = await asyncio.gather(*(one(i) for i in range(self.spec.count)))
        self.clients = [tracked for tracked, error in started if not error]
        errors = [error for _, error in started if error]
        return {"ok": len(self.clients), "failures": len(errors), "error_samples": sorted(set(errors))[:3]}

    async def arm(self, prefix: str) -> dict[str, Any]:
        for tracked in self.clients:
            tracked.arm(prefix)
        return {"armed": len(self.clients)}

    async def _until(self, done: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        return await wait_until(done, timeout, POLL_SECONDS)

    async def wait_back(self, missed: list[str], timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Until every client is back (resubscribed, holding ``missed``) or ``timeout``; how many are."""
        waiting = list(self.clients)

        def all_back() -> bool:
            waiting[:] = [t for t in waiting if t.back_at(missed) is None]  # only the stragglers are looked at again
            return not waiting

        await self._until(all_back, timeout)
        return {"back": len(self.clients) - len(waiting)}

    async def finish(self, missed: list[str], final: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """Until every client holds ``final`` too (or ``timeout``); back times and delivery counts per client.

        Lost = measured messages (``missed`` and ``final``) a client never emitted (also counted over
        only the clients that resubscribed: a gap in the replay, not a client still away);
        duplicates = emitted more than once; resent = frames the client dropped as
        already seen (the server sent them again); attempts = connection attempts
        that ended without a welcome, plus the drop itself.
        """
        expected = [*missed, final]
        waiting = list(self.clients)

        def all_final() -> bool:
            waiting[:] = [t for t in waiting if final not in t.received]
            return not waiting

        await self._until(all_final, timeout)
        backs = [t.back_at(missed) for t in self.clients]
        return {
            "back_times": [back for back in backs if back is not None],
            "not_back": sum(back is None for back in backs),
            "lost": sum(t.received[tag] == 0 for t in self.clients for tag in expected),
            "lost_resubscribed": sum(
                t.received[tag] == 0 for t in self.clients if t.resubscribed is not None for tag in expected
            ),
            "not_resubscribed": sum(t.resubscribed is None for t in self.clients),
            "duplicates": sum(max(0, t.received[tag] - 1) for t in self.clients for tag in expected),
            "resent": sum(t.client.duplicates_dropped - t.resent_before for t in self.clients),
            "attempts": sum(t.client.stats.disconnects - t.attempts_before for t in self.clients),
            "disconnected": sum(t.disconnected is not None for t in self.clients),
            "failure_log": [entry for t in self.clients for entry in t.failures],
            "sleep_log": [entry for t in self.clients for entry in t.sleeps],
            "welcome_times": [t.welcomed for t in self.clients if t.welcomed is not None],
            "resubscribe_times": [t.resubscribed for t in self.clients if t.resubscribed is not None],
        }

    async def ping(self) -> dict[str, Any]:
        return {}

    async def close(self) -> dict[str, Any]:
        gate = asyncio.Semaphore(CLOSE_CONCURRENCY)

        async def one(tracked: Tracked) -> None:
            async with gate:
                await tracked.client.close()

        await asyncio.gather(*(one(t) for t in self.clients), return_exceptions=True)
        closed, self.clients = len(self.clients), []
        return {"closed": closed}


def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    """Entry point of a reconnect-storm client process."""
    run(ReconnectWorker(spec, pipe))
