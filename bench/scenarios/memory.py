"""Idle memory per connection: RSS growth of the server's process tree over N idle connections, / N."""

from __future__ import annotations

from bench.context import RunContext
from bench.infra import ServerProcess
from bench.scenarios.common import close_all, open_all, pool, settle


def run(ctx: RunContext, server: ServerProcess) -> dict[str, float]:
    n = ctx.sizes.memory
    settle(ctx, [server])
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
