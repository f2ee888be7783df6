"""The garbage collector of a ws process: start-up objects frozen, the young threshold a setting.

A ws process holds many long-lived objects per open connection (server
protocol, consumer, scope, timers), and Python's full collection walks every
tracked object. Two settings, applied once the application is imported and
before the process listens:

* ``gc.freeze()`` moves everything alive after start-up (Django, the URL
  configuration, the modules: about 120,000 objects) to the permanent
  generation, so no full collection walks them again. Only start-up objects
  are frozen, never a connection's, so nothing a connection leaves behind is
  kept.
* ``WS_GC_THRESHOLD`` (default 0: Python's 2,000) is the number of
  allocations between young collections. Raising it trades memory for CPU:
  fewer collections (connect + auth measured 570 → 890 connections/s on
  Daphne at 50,000), but the cycles a closed connection leaves, with their
  buffers, wait longer to be freed: 1,000 connect/disconnect cycles grew the
  process by 19.5 MiB at 50,000 and 10.7 MiB at 10,000, against 0.3 MiB at
  the default (``tests/integration/test_churn.py``). So the default keeps
  Python's; raise it only where memory under churn is not the constraint.
* Full collections are paced to connect bursts (``ws_service.gc_pacing``):
  one planned collection when a burst ends instead of one per quarter of
  growth during it.
"""

from __future__ import annotations

import gc
import logging

from ws_service.gc_pacing import pacer

logger = logging.getLogger("ws.server")


def tune(young_threshold: int) -> None:
    """Freeze the start-up objects, set the young generation's threshold (0: Python's own), pace full collections."""
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
    pacer.install()
