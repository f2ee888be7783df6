"""Helpers shared by the scenarios: a client pool sized for this run, merging replies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import proctree
from bench.clients import worker_main
from bench.context import RunContext, progress
from bench.infra import ServerProcess
from bench.loadgen import ClientPool, WorkerMain

PING = '{"type": "ping"}'


def pool(
    ctx: RunContext,
    urls: Sequence[str],
    total: int,
    cookies: Sequence[str] | None = None,
    target: WorkerMain = worker_main,
) -> ClientPool:
    """Clients for ``total`` connections; connection i sends ``cookies[i % len(cookies)]`` (default: the shared
    accounts' sessions, round robin); ``target`` runs in each client process."""
    sizes = ctx.sizes
    return ClientPool(
        urls,
        total,
        cookies if cookies is not None else ctx.cookies,
        processes=sizes.client_processes,
        concurrency=sizes.connect_concurrency,
        open_timeout=sizes.open_timeout,
        target=target,
    )


def open_all(ctx: RunContext, clients: ClientPool, total: int) -> dict[str, Any]:
    """Open every connection; merged times, failures and the wall-clock span over all processes."""
    replies = clients.request(ctx.sizes.open_timeout * (1 + total / ctx.sizes.connect_concurrency), "open")
    errors = sorted({sample for reply in replies for sample in reply["error_samples"]})
    for sample in errors[:3]:
        ctx.notes.append(f"connect error: {sample}")
        progress(f"  connect error (sample): {sample}")
    return {
        "times": [t for reply in replies for t in reply["times"]],
        "failures": sum(reply["failures"] for reply in replies),
        "span": max(reply["ended"] for reply in replies) - min(reply["started"] for reply in replies),
    }


def close_all(ctx: RunContext, clients: ClientPool, servers: Sequence[ServerProcess]) -> None:
    clients.request(120, "close")
    settle(ctx, servers)


def settle(ctx: RunContext, servers: Sequence[ServerProcess], quiet_for: float = 0.0) -> float:
    """Until the servers' trees are quiet (for ``quiet_for`` seconds in a row), bounded; the seconds waited."""
    return proctree.wait_quiet(
        [server.pid for server in servers], timeout=ctx.sizes.settle_timeout, quiet_for=quiet_for
    )


def total(replies: Sequence[dict[str, Any]], key: str) -> int:
    return sum(int(reply[key]) for reply in replies)
