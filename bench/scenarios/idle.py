"""Idle CPU: N idle connections (one user each) to one server process; CPU of its process tree over a window.

After every connection is open and the server has stayed quiet for
``QUIET_SECONDS`` in a row (the same rule for every server, bounded by the
settle timeout; the seconds waited are reported), the user + system CPU time of the server's process tree
(``/proc/<pid>/stat``, summed over ``bench.proctree.tree_pids``) is read
before and after a window of ``idle_seconds``; the figure is that CPU time as
a percentage of one core over the window. What remains is the server's own
idle work: keepalive pings (every 20 s everywhere; the clients answer) and
whatever it does per connection or per process on timers. Afterwards every
connection must still be open and answer a protocol ping (drops). For the
product, the full (generation 2) garbage collections the process ran during
the window are read from its /metrics (``python_gc_collections_total``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench import proctree
from bench.context import RunContext
from bench.infra import ServerProcess
from bench.scenarios.common import close_all, open_all, pool, settle, total

# Before the window every server's tree must use under 5 % of a core for this long in a row: the work
# that follows the connects (the last of them, a garbage collection a moment later) is over, on every server.
QUIET_SECONDS = 3.0


def cpu_over_window(server: ServerProcess, seconds: float) -> tuple[float, float]:
    """CPU seconds of the server's tree and the wall-clock seconds of the window (cut short if it exits)."""
    before = proctree.tree_cpu_seconds(server.pid)
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds and server.alive():
        time.sleep(min(0.5, seconds - elapsed))
    used = proctree.tree_cpu_seconds(server.pid) - before
    return used, time.monotonic() - started


def run(
    ctx: RunContext,
    server: ServerProcess,
    before_window: Callable[[], None] | None = None,
    after_window: Callable[[], None] | None = None,
) -> dict[str, float]:
    """The hooks run just before and after the window (a profiler attaches and detaches)."""
    n = ctx.sizes.idle
    with pool(ctx, [server.ws_url], n, ctx.distinct_cookies(n)) as clients:
        opened = open_all(ctx, clients, n)
        settled = settle(ctx, [server], quiet_for=QUIET_SECONDS)
        if before_window is not None:
            before_window()
        full_before = server.full_collections()
        used, elapsed = cpu_over_window(server, ctx.sizes.idle_seconds)
        full_collections = server.full_collections() - full_before
        if after_window is not None:
            after_window()
        checked = clients.request(120, "check", 10.0)
        close_all(ctx, clients, [server])
    return {
        "idle_cpu_pct": 100.0 * used / elapsed if elapsed > 0 else float("nan"),
        "idle_connected": float(len(opened["times"])),
        "idle_failures": float(opened["failures"]),
        "idle_drops": float(total(checked, "dropped")),
        "idle_settle_s": settled,
        "idle_full_gcs": full_collections,
    }
