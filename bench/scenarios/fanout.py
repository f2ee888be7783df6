"""Fan-out: N subscribers of one topic over 2 server processes; one publish per repetition and path.

Time to delivery is measured per subscriber from just before the publish call
to the moment its client process reads the frame (``time.monotonic()`` is
CLOCK_MONOTONIC, system-wide on Linux, so it compares across processes).
Lost: subscribed - received within the timeout; subscribers that failed to
connect or subscribe are counted separately.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence

from bench.context import RunContext, progress
from bench.infra import ServerProcess
from bench.loadgen import ClientPool
from bench.publishers import TOPIC, Publisher
from bench.scenarios.common import close_all, open_all, pool, settle, total
from bench.stats import percentile

SUBSCRIBE = json.dumps({"type": "subscribe", "topic": TOPIC})


def prefix(path: str) -> str:
    return "fanout_http_" if path == "http" else "fanout_"


def _one_publish(
    ctx: RunContext, clients_pool: ClientPool, publisher: Publisher, subscribed: int, path: str
) -> dict[str, float]:
    tag = f"bench-{uuid.uuid4().hex[:16]}"
    timeout = ctx.sizes.fanout_timeout
    clients_pool.send("arm", tag, timeout)
    clients_pool.collect(60)  # every reader is waiting
    started = time.monotonic()
    publisher.publish(tag)
    replies = clients_pool.collect(timeout + 60)
    latencies = [t - started for reply in replies for t in reply["times"]]
    last = max(latencies) if latencies else float("nan")
    key = prefix(path)
    return {
        f"{key}last_ms": last * 1000,
        f"{key}p50_ms": percentile(latencies, 50) * 1000,
        f"{key}p99_ms": percentile(latencies, 99) * 1000,
        f"{key}rate": len(latencies) / last if latencies and last > 0 else 0.0,
        f"{key}lost": float(subscribed - len(latencies)),
    }


def run(
    ctx: RunContext, servers: Sequence[ServerProcess], publishers: Mapping[str, Publisher], reps: int, name: str = ""
) -> list[dict[str, float]]:
    """``reps`` publishes on every path to the same subscribers; one figure dict per repetition."""
    n = ctx.sizes.fanout
    results: list[dict[str, float]] = []
    with pool(ctx, [server.ws_url for server in servers], n) as clients:
        opened = open_all(ctx, clients, n)
        replies = clients.request(
            ctx.sizes.open_timeout + 60, "send_all", SUBSCRIBE, "subscribed", ctx.sizes.open_timeout
        )
        subscribed = total(replies, "ok")
        setup_failures = float(opened["failures"] + total(replies, "failures"))
        settle(ctx, servers)
        for rep in range(reps):
            figures: dict[str, float] = {"fanout_setup_failures": setup_failures}
            for path, publisher in publishers.items():
                figures |= _one_publish(ctx, clients, publisher, subscribed, path)
                settle(ctx, servers)
            progress(f"  {name} fan-out rep {rep + 1}/{reps}: " + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()))
            results.append(figures)
        close_all(ctx, clients, servers)
    return results
