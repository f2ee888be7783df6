"""Full garbage collections paced to connect bursts: one when a burst ends, not one per quarter of growth.

CPython runs a full (generation 2) collection whenever the objects promoted
since the last one exceed 25 % of the long-lived ones. A ws process's
long-lived objects are mostly its connections', so while 10,000 clients
connect it runs 6-7 full collections, each walking every connection opened so
far (0.6-1.3 s of CPU each at 10,000), and the last one lands at a random
moment relative to the burst's end: often seconds into the idle time after it.

The pacer (installed by the launcher, ``ws_service.launcher.gc_tuning``):

* once the open connections have grown by an eighth (half CPython's own
  trigger, at least ``MIN_GROWTH``) over their number at the last planned
  collection, it *holds* the automatic full
  collection off (the generation-2 threshold raised); young and middle
  collections run as usual;
* the hold ends ``QUIET_SECONDS`` after the last connection was added or
  closed, or ``HOLD_SECONDS`` after it began, whichever comes first: then one
  planned full collection runs and the threshold is restored;
* after its planned collection the pacer *freezes* what survived
  (``gc.freeze()``): the open connections' objects. CPython's automatic full
  collections then walk only what is newer. An idle process still promotes
  short-lived objects (per-ping timers and buffers, which die by reference
  counting soon after) and so still triggers full collections about once a
  minute at 10,000 connections: they used to walk every connection (0.6-1.3 s
  of CPU each, freeing nothing) and now walk only the objects made since.

So a connect burst costs one full collection per ``HOLD_SECONDS`` (plus one at
its end) instead of one per quarter of growth, and the process goes idle with
nothing pending. Work only while connections are added or closed: one timer
per hold, none at idle.

Memory stays bounded: frozen objects are still freed by reference counting;
only reference cycles of closed connections wait: once an eighth of the
connections (at least ``MIN_GROWTH``) closed since the last planned
collection, another one runs at once, unfreezing everything first
(``gc.unfreeze()``). Garbage that reaches the oldest generation during a hold
waits at most ``HOLD_SECONDS``. A planned collection walks every object, as
CPython's own full collections did; they now run per connection turnover
(an eighth of the connections added or closed), not per promoted object.
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
        self.open_at_full = 0  # open connections when the last planned (or, unfrozen, any) full collection ran
        self.closed_since = 0  # connections closed since then
        self.frozen = False  # whether the last planned collection froze its survivors
        self.holding_since: float | None = None
        self.planned = 0  # planned full collections run
        self._last_change = 0.0
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
        if self.frozen:
            gc.unfreeze()
            self.frozen = False

    def changed(self, open_connections: int, *, added: bool) -> None:
        """The process now has ``open_connections``; ``added``: one was just added (on its event loop)."""
        self.open = open_connections
        if not self.installed:
            return
        self._last_change = time.monotonic()
        trigger = max(self.min_growth, self.open_at_full // 8)
        if not added:
            self.closed_since += 1
            if self.frozen and self.closed_since == trigger and self.holding_since is None:
                # Closed connections' cycles among the frozen objects: collected soon, without a hold.
                asyncio.get_running_loop().call_soon(self._collect_closed)
            return
        if self.holding_since is None and open_connections - self.open_at_full >= trigger:
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
        ends = min(self._last_change + self.quiet_seconds, self.holding_since + self.hold_seconds)
        if now < ends:
            self._timer = asyncio.get_running_loop().call_later(ends - now, self._check)
            return
        held = now - self.holding_since
        self._release()
        self._collect(f"after a {held:.1f} s hold")

    def _collect_closed(self) -> None:
        if self.installed and self.holding_since is None:  # a hold's own collection would do it
            self._collect(f"after {self.closed_since} closed")

    def _collect(self, why: str) -> None:
        """One planned full collection of everything (frozen objects too), then freeze the survivors."""
        started = time.process_time()
        gc.unfreeze()  # closed connections' cycles among the frozen objects are collected too
        gc.collect()
        gc.freeze()
        self.frozen = True
        self.open_at_full = self.open
        self.closed_since = 0
        self.planned += 1
        logger.info(
            "garbage collector: planned full collection at %d open connections %s, %.2f s of CPU, %d objects frozen",
            self.open,
            why,
            time.process_time() - started,
            gc.get_freeze_count(),
        )

    def _release(self) -> None:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, self._threshold)
        self.holding_since = None

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Once frozen, CPython's own full collections walk only the newer objects: the baseline stays the planned one.
        if phase == "stop" and info["generation"] == 2 and not self.frozen:
            self.open_at_full = self.open
            self.closed_since = 0


pacer = GcPacer()
