"""Request/response: N connections each in a closed loop (``ping`` → reply) for a fixed time.

Throughput is replies per second over all connections; latency is the round
trip of each request. Errors: failed connects, error frames (e.g.
``rate_limited``), closed sockets and timeouts.
"""

from __future__ import annotations

from bench.context import RunContext
from bench.infra import ServerProcess
from bench.scenarios.common import PING, close_all, open_all, pool
from bench.stats import percentile


def run(ctx: RunContext, server: ServerProcess) -> dict[str, float]:
    n, duration = ctx.sizes.reqresp, ctx.sizes.reqresp_seconds
    with pool(ctx, [server.ws_url], n) as clients:
        opened = open_all(ctx, clients, n)
        replies = clients.request(duration + 60, "request_response", PING, duration)
        close_all(ctx, clients, [server])
    rtts = [rtt for reply in replies for rtt in reply["rtts"]]
    throughput = sum(len(reply["rtts"]) / reply["elapsed"] for reply in replies if reply["elapsed"] > 0)
    return {
        "rr_throughput": throughput,
        "rr_p50_ms": percentile(rtts, 50) * 1000,
        "rr_p99_ms": percentile(rtts, 99) * 1000,
        "rr_errors": float(opened["failures"] + sum(reply["errors"] for reply in replies)),
    }
