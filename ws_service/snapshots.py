"""A topic's snapshot on subscribe, read once per batch of concurrent subscribers (single flight per topic).

Subscribing reads the topic's last id and, with ``since`` (or ``recent``, the
newest N), the first page of history. The reads run on Django's one thread for database work, one
after another: N users subscribing to one topic at once would queue N thread
hops, N connection health checks and N queries there.

Instead, each process keeps at most one read in flight per topic. Subscribers
arriving while it runs wait for the next one, which starts when the current
one ends and answers all of them in one thread hop: one ``last_id`` query and
one history query per distinct ``since`` or ``recent`` asked.

Correctness: a subscriber joins the topic's group *before* asking, and is only
ever answered by a read that *starts after* it asked. So everything published
after its join is either in the snapshot or arrives live (duplicates are
dropped by ``ws_service.subscriptions``), exactly as with its own query.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from shared import messaging
from ws_service.loop_local import LoopLocal, process_task

Snapshot = tuple[int, list[dict[str, Any]]]
#: What a subscriber asked for: ``(since, recent)``, at most one of them set.
Ask = tuple[int | None, int | None]


def page_limit() -> int:
    """Messages in the first replay page (``REPLAY_PAGE_SIZE``, at most ``WS_REPLAY_MAX_MESSAGES``)."""
    cap: int = settings.WS_REPLAY_MAX_MESSAGES
    return min(messaging.REPLAY_PAGE_SIZE, cap)


def _start(last: int, since: int | None, recent: int | None) -> int | None:
    """Where the replay starts: ``since``, or for ``recent`` the id before the newest ``recent`` (capped).

    Ids are gap-free, so the newest N are the replay after ``last - N`` up to
    ``last`` (messages published meanwhile follow live).
    """
    if recent is None:
        return since
    cap: int = settings.WS_REPLAY_MAX_MESSAGES
    return max(0, last - min(recent, cap)) if recent > 0 else None


def read_snapshots(topic: str, asks: set[Ask]) -> dict[Ask, Snapshot]:
    """The topic's last id and, per ask, the first page of its replay (none when nothing is asked)."""
    last = messaging.last_id(topic)
    limit = page_limit()
    answers: dict[Ask, Snapshot] = {}
    for since, recent in asks:
        start = _start(last, since, recent)
        replay = [] if start is None else messaging.messages_after(topic, start, until=last, limit=limit)
        answers[since, recent] = (last, replay)
    return answers


@dataclass(slots=True)
class _Batch:
    """Subscribers of one topic waiting for the same read, by what each asked."""

    waiting: list[tuple[Ask, asyncio.Future[Snapshot]]] = field(default_factory=list)


class SnapshotReader:
    """One per process: at most one snapshot read in flight per topic; later askers share the next one."""

    def __init__(self) -> None:
        self._next: dict[str, _Batch] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        #: Reads done (one thread hop each), for tests and curiosity.
        self.reads = 0

    async def snapshot(self, topic: str, since: int | None, recent: int | None = None) -> Snapshot:
        """The last id and the first page after ``since`` (or of the newest ``recent``), read after this call began."""
        future: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        self._next.setdefault(topic, _Batch()).waiting.append(((since, recent), future))
        if topic not in self._runners:
            self._runners[topic] = process_task(self._run(topic), f"snapshot:{topic[:64]}")
        return await future

    async def _run(self, topic: str) -> None:
        try:
            while (batch := self._next.pop(topic, None)) is not None:
                waiting = [(ask, future) for ask, future in batch.waiting if not future.done()]
                if not waiting:
                    continue
                try:
                    results = await database_sync_to_async(read_snapshots)(topic, {ask for ask, _ in waiting})
                except asyncio.CancelledError:
                    for _, future in waiting:
                        future.cancel()
                    raise
                except Exception as exc:  # every waiter gets the failure (an ``unavailable`` error frame)
                    for _, future in waiting:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                finally:
                    self.reads += 1
                for ask, future in waiting:
                    if not future.done():
                        future.set_result(results[ask])
        finally:
            self._runners.pop(topic, None)
            for _, future in self._next.pop(topic, _Batch()).waiting:  # only when cancelled mid-read
                future.cancel()


_readers: LoopLocal[SnapshotReader] = LoopLocal(SnapshotReader)


def get_reader() -> SnapshotReader:
    """The reader of the running event loop (one per ws process)."""
    return _readers.get()
