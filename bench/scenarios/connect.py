"""Connect + auth: N connections opened with bounded concurrency; rate, handshake p50/p99, failures,
and the peak number of database connections during the burst (``bench.dbwatch``).

A connection counts once its ``welcome`` frame arrives (the product sends it
after authentication and group joins), so handshake time is TCP connect to
welcome.
"""

from __future__ import annotations

from bench.context import RunContext
from bench.dbwatch import peak_connections
from bench.infra import ServerProcess
from bench.scenarios.common import close_all, open_all, pool
from bench.stats import percentile


def run(ctx: RunContext, server: ServerProcess) -> dict[str, float]:
    n = ctx.sizes.connect
    with pool(ctx, [server.ws_url], n) as clients:
        with peak_connections(ctx.env["DATABASE_URL"]) as database:
            opened = open_all(ctx, clients, n)
        close_all(ctx, clients, [server])
    times = opened["times"]
    return {
        "connect_rate": len(times) / opened["span"] if opened["span"] > 0 else 0.0,
        "connect_p50_ms": percentile(times, 50) * 1000,
        "connect_p99_ms": percentile(times, 99) * 1000,
        "connect_failures": float(opened["failures"]),
        "connect_db_peak": float(database.value),
    }
