"""Hold: N connections to one server (two processes on one socket) kept open and idle, then checked.

Every connection must still be open and answer a protocol ping after the hold:
drops = N - alive (failed opens counted separately).
"""

from __future__ import annotations

import time

from bench import proctree
from bench.context import RunContext
from bench.infra import ServerProcess
from bench.scenarios.common import close_all, open_all, pool, total


def run(ctx: RunContext, server: ServerProcess) -> dict[str, float]:
    n = ctx.sizes.hold
    before = server.rss_kib()
    with pool(ctx, [server.ws_url], n) as clients:
        opened = open_all(ctx, clients, n)
        connected = len(opened["times"])
        held_from = time.monotonic()
        while time.monotonic() - held_from < ctx.sizes.hold_seconds:
            if not server.alive():
                break
            time.sleep(min(1.0, ctx.sizes.hold_seconds))
        after = server.rss_kib()
        busiest = proctree.busiest_socket_count(server.pid)
        checked = clients.request(120, "check", 10.0)
        close_all(ctx, clients, [server])
    return {
        "hold_connected": float(connected),
        "hold_failures": float(opened["failures"]),
        "hold_drops": float(total(checked, "dropped")),
        "hold_rss_per_conn_kib": (after - before) / connected if connected else float("nan"),
        "hold_busiest_process_sockets": float(busiest),
    }
