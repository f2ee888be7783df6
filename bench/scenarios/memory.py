"""Idle memory per connection: RSS growth of the server's process tree over N idle connections, / N.

Measured on a fresh server process after a small warm-up, between two quiet points.
"""

from __future__ import annotations

from bench.context import RunContext
from bench.infra import ServerProcess
from bench.scenarios.common import close_all, open_all, pool, settle

WARM_UP = 20


def _warm_up(ctx: RunContext, server: ServerProcess) -> None:
    """A few connections first, so one-off start-up costs (thread pools, database and Redis connections,
    lazy imports) are not charged to the measured connections."""
    with pool(ctx, [server.ws_url], WARM_UP) as clients:
        open_all(ctx, clients, WARM_UP)
        close_all(ctx, clients, [server])


def run(ctx: RunContext, server: ServerProcess) -> dict[str, float]:
    n = ctx.sizes.memory
    _warm_up(ctx, server)
    before = server.rss_kib()
    with pool(ctx, [server.ws_url], n) as clients:
        opened = open_all(ctx, clients, n)
        settle(ctx, [server])
        after = server.rss_kib()
        close_all(ctx, clients, [server])
    connected = len(opened["times"])
    return {
        "mem_per_conn_kib": (after - before) / connected if connected else float("nan"),
        "mem_rss_mib": after / 1024,
        "mem_failures": float(opened["failures"]),
    }
