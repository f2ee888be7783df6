"""The garbage collector of a ws process: startup objects frozen, young collections less often.

A ws process holds many long-lived objects per open connection (server
protocol, consumer, scope, timers), and Python's full collection walks every
tracked object. Two settings, applied once the application is imported and
before the process listens:

* ``gc.freeze()`` moves everything alive after start-up (Django, the URL
  configuration, the modules: about 120,000 objects) to the permanent
  generation, so no full collection walks them again. Only start-up objects
  are frozen, never a connection's, so nothing a connection leaves behind is
  kept.
* ``WS_GC_THRESHOLD`` (default 50,000; 0 keeps Python's 2,000) is the number
  of allocations between young collections. Objects that live for a few
  event-loop turns (a ping's timer, a frame, a handshake's intermediates) are
  then freed by reference counting before any collection sees them, instead
  of being promoted towards the old generation, whose growth is what starts a
  full collection. Cyclic garbage waits at most that many allocations longer.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger("ws.server")


def tune(young_threshold: int) -> None:
    """Freeze the start-up objects and set the young generation's threshold (0: Python's own)."""
    gc.collect()
    gc.freeze()
    if young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    logger.info(
        "garbage collector: %d start-up objects frozen, young threshold %d",
        gc.get_freeze_count(),
        gc.get_threshold()[0],
    )
