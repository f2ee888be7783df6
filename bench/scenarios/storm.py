"""Subscribe storm: N distinct users (one connection each) subscribe to one new topic at once, on one server process.

Per repetition, on the same N open connections (a new topic each time):

1. every client process sends all its ``subscribe`` frames at once; **time until
   all are subscribed** = from the first subscribe sent to the last
   ``subscribed`` reply received (over all client processes);
2. right then, one publish to the topic (a ``publish`` frame over a WebSocket;
   stock: ``group_send``): **publish to last delivery after the storm** = from
   just before the publish to the last subscriber's receipt, while the storm's
   own traffic (presence) may still be flowing;
3. the harness waits until every client has gone ``QUIET_SECONDS`` without a
   storm frame (longer than the product's presence coalescing interval) and
   the server is quiet;
4. one more publish to the same subscribers, now without presence traffic:
   **publish to last delivery without presence**, the baseline for step 2.

**Storm frames** = every frame the subscribers got from the first subscribe
to the end of the repetition, except their own ``subscribed`` reply and the
two measured messages (presence frames: types starting ``presence``, 0 on a
server without the presence feature); late
frames = those that came after the quiet point of step 3 (then the baseline
was not free of presence traffic after all).

Lost = messages not received within the timeout (two per subscribed user).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.context import RunContext, progress
from bench.infra import ServerProcess
from bench.loadgen import ClientPool
from bench.publishers import Publisher
from bench.scenarios.common import close_all, open_all, pool, settle, total

QUIET_SECONDS = 2.0


def _latencies(replies: Sequence[dict[str, Any]], since: float) -> list[float]:
    return [t - since for reply in replies for t in reply["times"]]


def _counts(replies: Sequence[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for reply in replies:
        counts.update(reply["counts"])
    return counts


def _one_storm(ctx: RunContext, clients: ClientPool, server: ServerProcess, publisher: Publisher) -> dict[str, float]:
    n, timeout = ctx.sizes.storm, ctx.sizes.storm_timeout
    topic = f"room.storm-{uuid.uuid4().hex[:12]}"
    after_tag, quiet_tag = (f"storm-{uuid.uuid4().hex[:16]}" for _ in range(2))
    frame = json.dumps({"type": "subscribe", "topic": topic})
    subscribed = clients.request(timeout + 60, "storm_subscribe", frame, (after_tag, quiet_tag), timeout)
    started = min(reply["started"] for reply in subscribed)
    last = max((reply["last"] for reply in subscribed if not math.isnan(reply["last"])), default=math.nan)
    ok = total(subscribed, "ok")
    published = time.monotonic()
    publisher.publish(after_tag, topic)
    settled = clients.request(timeout + 60, "storm_settle", after_tag, QUIET_SECONDS, timeout)
    settle(ctx, [server])
    quiet_published = time.monotonic()
    publisher.publish(quiet_tag, topic)
    finished = clients.request(timeout + 60, "storm_finish", quiet_tag, timeout)
    counts, at_quiet = _counts(finished), _counts(settled)
    for closed in (counts, at_quiet):
        closed.pop("closed", None)
    presence = sum(value for kind, value in counts.items() if kind.startswith("presence"))
    after, quiet = _latencies(settled, published), _latencies(finished, quiet_published)
    last_frame = max(reply["last_storm_frame"] for reply in settled)
    return {
        "storm_subscribe_s": last - started,
        "storm_failures": float(n - ok),
        "storm_frames": float(counts.total()),
        "storm_presence_frames": float(presence),
        "storm_presence_frames_per_user": presence / n,
        "storm_traffic_s": last_frame - started if last_frame > 0 else 0.0,
        "storm_unsettled": float(sum(not reply["quiet"] for reply in settled)),
        "storm_late_frames": float(counts.total() - at_quiet.total()),
        "storm_publish_last_ms": max(after, default=math.nan) * 1000,
        "storm_quiet_publish_last_ms": max(quiet, default=math.nan) * 1000,
        "storm_lost": float(2 * ok - len(after) - len(quiet)),
    }


def run(
    ctx: RunContext, server: ServerProcess, publisher: Publisher, reps: int, name: str = ""
) -> list[dict[str, float]]:
    """``reps`` storms (a new topic each) by the same N connections; one figure dict per repetition."""
    n = ctx.sizes.storm
    results: list[dict[str, float]] = []
    with pool(ctx, [server.ws_url], n, ctx.distinct_cookies(n)) as clients:
        open_all(ctx, clients, n)
        settle(ctx, [server])
        for rep in range(reps):
            figures = _one_storm(ctx, clients, server, publisher)
            progress(f"  {name} storm rep {rep + 1}/{reps}: " + ", ".join(f"{k}={v:.1f}" for k, v in figures.items()))
            results.append(figures)
            settle(ctx, [server])
        close_all(ctx, clients, [server])
    return results
