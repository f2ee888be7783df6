"""``python -m bench.servers.traced [-m MODULE ARGS...]``: one server process under tracemalloc.

Without arguments it runs the product (``python -m ws_service``, one
process); ``-m daphne ...`` or ``-m uvicorn ...`` runs that server instead
(the bare servers, for comparison).

Used by ``python -m bench memprofile``. Tracing starts at the first SIGUSR1
(imports under tracemalloc would take minutes), so a snapshot holds only what
was allocated since then and is still alive; each SIGUSR1 writes, into ``BENCH_TRACE_DIR``, a tracemalloc
snapshot (``snapshot-N.pickle``) and the count of live objects by type
(``types-N.json``: the objects the garbage collector tracks, i.e. those
``gc.get_objects()`` returns, frozen ones included: the dump unfreezes them),
numbered from 1. With ``BENCH_TRACE_MALLOC=0`` it writes the counts only, never
starting tracemalloc (the count of tracked
objects, which ``tests/integration/test_idle_objects.py`` checks). The
product needs ``WS_WORKERS=1`` (the server runs in this process).
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType

FRAMES = 8
_taken = 0


def _dump(signum: int, frame: FrameType | None) -> None:
    global _taken
    _taken += 1
    directory = Path(os.environ["BENCH_TRACE_DIR"])
    malloc = os.environ.get("BENCH_TRACE_MALLOC", "1") != "0"
    if malloc and not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
    gc.unfreeze()  # count every tracked object: the product freezes start-up objects and its connections'
    gc.collect()
    if malloc:
        tracemalloc.take_snapshot().dump(str(directory / f"snapshot-{_taken}.pickle"))
    counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    (directory / f"types-{_taken}.json").write_text(json.dumps(counts))
    (directory / f"done-{_taken}").touch()


def main(argv: list[str]) -> None:
    module, arguments = "ws_service", []
    if argv:
        if argv[0] != "-m" or len(argv) < 2:
            raise SystemExit("usage: python -m bench.servers.traced [-m MODULE ARGS...]")
        module, arguments = argv[1], argv[2:]
    if module == "ws_service" and os.environ.get("WS_WORKERS", "1") != "1":
        raise SystemExit("bench.servers.traced needs WS_WORKERS=1")
    signal.signal(signal.SIGUSR1, _dump)
    sys.argv = [module, *arguments]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
