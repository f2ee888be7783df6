"""``python -m bench memprofile`` names each allocation by the line that made it (not the oldest traced frame)."""

from __future__ import annotations

import tracemalloc

from bench.memprofile import _where


def test_an_allocation_is_named_by_its_line_and_the_innermost_project_frame() -> None:
    # As tracemalloc records a call chain: the allocating frame first, the oldest last.
    traced = (
        ("/venv/lib/python3.13/site-packages/daphne/ws_protocol.py", 48),
        ("/repo/ws_service/kernel.py", 120),
        ("/repo/ws_service/app.py", 10),
        ("/venv/lib/python3.13/site-packages/twisted/internet/defer.py", 200),
    )
    assert _where(tracemalloc.Traceback(traced)) == "daphne/ws_protocol.py:48 ← /repo/ws_service/kernel.py:120"


def test_an_allocation_outside_the_project_is_named_by_its_line_alone() -> None:
    traced = (("/venv/lib/python3.13/site-packages/autobahn/util.py", 7), ("/usr/lib/python3.13/asyncio/events.py", 89))
    assert _where(tracemalloc.Traceback(traced)) == "autobahn/util.py:7"
