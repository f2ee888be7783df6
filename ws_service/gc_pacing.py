"""Full garbage collections paced to connect bursts: one when a burst ends, not one per quarter of growth.

CPython runs a full (generation 2) collection whenever the objects promoted
since the last one exceed 25 % of the long-lived ones. A ws process's
long-lived objects are mostly its connections', so while 10,000 clients
connect it runs 6-7 full collections, each walking every connection opened so
far (0.6-1.3 s of CPU each at 10,000), and the last one lands at a random
moment relative to the burst's end: often seconds into the idle time after it.

The pacer (installed by the launcher, ``ws_service.launcher.gc_tuning``):

* once the open connections have grown by an eighth (half CPython's own
  trigger, at least ``MIN_GROWTH``) over their number at the last full
  collection, it *holds* the automatic full collection off (the generation-2
  threshold raised); young and middle collections run as usual;
* the hold ends ``QUIET_SECONDS`` after the last connection was added, or
  ``HOLD_SECONDS`` after it began, whichever comes first: then one planned
  full collection runs and the threshold is restored.

So a connect burst costs one full collection per ``HOLD_SECONDS`` (plus one at
its end) instead of one per quarter of growth, and the process goes idle with
nothing pending. Work only while connections are being added: one timer per
hold, none at idle.

Memory stays bounded: garbage that reaches the oldest generation during a hold
(closed connections' cycles) waits at most ``HOLD_SECONDS`` for the planned
collection. At a steady number of connections (churn) the open connections
never grow by an eighth over the last full collection, so the pacer never
holds and CPython's own rule applies unchanged.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

logger = logging.getLogger("ws.server")

QUIET_SECONDS = 1.0
HOLD_SECONDS = 10.0
MIN_GROWTH = 64
# The generation-2 threshold while holding: no automatic full collection.
HELD_THRESHOLD = 1 << 30


class GcPacer:
    """Tracks the open connections; holds full collections while they grow (see the module docstring)."""

    def __init__(
        self, *, quiet_seconds: float = QUIET_SECONDS, hold_seconds: float = HOLD_SECONDS, min_growth: int = MIN_GROWTH
    ) -> None:
        self.quiet_seconds = quiet_seconds
        self.hold_seconds = hold_seconds
        self.min_growth = min_growth
        self.installed = False
        self.open = 0
        self.open_at_full = 0  # open connections when the last full collection ran
        self.holding_since: float | None = None
        self.planned = 0  # planned full collections run
        self._last_added = 0.0
        self._threshold = 0  # the generation-2 threshold to restore
        self._timer: asyncio.TimerHandle | None = None

    def install(self) -> None:
        """Start pacing this process's collector (once, before the process listens)."""
        if not self.installed:
            gc.callbacks.append(self._after_collection)
            self.installed = True
            self.open_at_full = self.open

    def uninstall(self) -> None:
        """Stop pacing; a hold in progress ends without a collection."""
        if self.installed:
            gc.callbacks.remove(self._after_collection)
            self.installed = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.holding_since is not None:
            self._release()

    def changed(self, open_connections: int, *, added: bool) -> None:
        """The process now has ``open_connections``; ``added``: one was just added (on its event loop)."""
        self.open = open_connections
        if not (added and self.installed):
            return
        self._last_added = time.monotonic()
        growth = open_connections - self.open_at_full
        if self.holding_since is None and growth >= max(self.min_growth, self.open_at_full // 8):
            self._hold()

    def _hold(self) -> None:
        young, middle, old = gc.get_threshold()
        if young == 0:  # the collector is disabled: nothing to pace
            return
        self._threshold = old
        gc.set_threshold(young, middle, HELD_THRESHOLD)
        self.holding_since = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(self.quiet_seconds, self._check)

    def _check(self) -> None:
        """At the end of the hold: one planned full collection; else look again when it may end."""
        self._timer = None
        if self.holding_since is None:
            return
        now = time.monotonic()
        ends = min(self._last_added + self.quiet_seconds, self.holding_since + self.hold_seconds)
        if now < ends:
            self._timer = asyncio.get_running_loop().call_later(ends - now, self._check)
            return
        held = now - self.holding_since
        self._release()
        started = time.process_time()
        gc.collect()
        self.planned += 1
        logger.info(
            "garbage collector: planned full collection at %d open connections after a %.1f s hold, %.2f s of CPU",
            self.open,
            held,
            time.process_time() - started,
        )

    def _release(self) -> None:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, self._threshold)
        self.holding_since = None

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.open_at_full = self.open


pacer = GcPacer()
