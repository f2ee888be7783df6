"""``python -m tests.support.gc_probe``: the ws service (one process) that reports its GC-tracked objects.

On each SIGUSR1 it runs a full collection and writes the objects the garbage
collector tracks (``gc.get_objects()``), counted by type, as JSON to
``GC_PROBE_FILE`` (replaced atomically). A full collection's cost is proportional to that
number, so a test can put a ceiling on what each idle connection adds.
Needs ``WS_WORKERS=1`` (the server runs in this process).
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType


def _report(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    target = Path(os.environ["GC_PROBE_FILE"])
    gc.collect()
    partial = target.with_suffix(".partial")
    counts = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    partial.write_text(json.dumps(counts))
    partial.replace(target)


def main() -> None:
    if os.environ.get("WS_WORKERS") != "1":
        raise SystemExit("tests.support.gc_probe needs WS_WORKERS=1")
    signal.signal(signal.SIGUSR1, _report)
    sys.argv = ["ws_service"]
    runpy.run_module("ws_service", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
