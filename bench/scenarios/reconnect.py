"""Reconnect storm: K clients of one server process, which is restarted (SIGTERM, then a new process on its port).

K clients (**each a different user**, with its own session) use the
project's own Python client (``wsclient.WsClient``, see
``bench.reconnect_client``), with its reconnect backoff and resume, and are
subscribed to one topic. Per repetition, on the same clients:

1. at T0 the server process gets SIGTERM (the product drains: every
   connection is closed with 1012; the raw server closes them with 1012 too);
2. from T0 until the new process answers ``/healthz``, messages are published
   to the topic, ``reconnect_rate`` per second (the first at T0), through the
   product's server-side publish (stored, then sent over the channel layer,
   as ``bench.publishers.ProductLayerPublisher`` does); the raw server stores
   nothing, so no message can be published while it is away;
3. once the old process has exited, a new one starts on the same port;
4. a client is **back** once it has reconnected, its ``subscribed`` reply
   (with ``since``) has arrived and it has emitted every message published
   while the server was away (replay, ``more_history`` continued);
5. once every client is back (or the timeout passed), one more message is
   published (raw: a ``publish`` frame to the new process), which every
   client must receive live: the resubscription really joined the topic.

Figures: seconds from T0 to 50 %, 99 % and 100 % of the K clients back (99 %:
the ⌈0.99 K⌉-th back time; NaN when fewer are back); T0 to the old process's
exit and to the new one's ``/healthz``, and from that ``/healthz`` to 100 %
back (what reconnecting and replaying took once the server was there); messages published while away;
**lost** = measured messages (those and the final one) a client never
emitted to the application, over all clients and over only those that
resubscribed (a gap in the replay rather than a client still away);
**duplicates** = emitted more than once (so 0 lost and 0 duplicates is
exactly once per client, as the application sees it); clients that never
resubscribed; resent = frames the client dropped as already seen; connection
attempts per client; failures = clients not started or not back in time.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import reconnect_client
from bench.configs import Config
from bench.context import RunContext, progress
from bench.infra import STOP_GRACE_SECONDS, ServerProcess
from bench.loadgen import ClientPool
from bench.publishers import ProductLayerPublisher, Publisher, WsPublisher
from bench.scenarios.common import pool, settle, total

FINAL_TIMEOUT = 30.0
SLEEP_SHOWN = 2.0  # the timeline counts backoff sleeps longer than this apart
START_TIMEOUT = 120.0


def timeline(finished: list[dict[str, Any]], times: dict[str, float]) -> list[str]:
    """Where the storm's time went, per second after T0: failed attempts by kind, backoff sleeps, welcomes."""
    t0 = times["t0"]
    failures: Counter[str] = Counter(kind for reply in finished for _, kind in reply["failure_log"])
    lines = [
        f"T0 → old exit {times['exit_s']:.2f}s, → new /healthz {times['restart_s']:.2f}s; "
        f"failures by kind: {dict(failures.most_common())}"
    ]
    sleeps = sorted(delay for reply in finished for _, delay in reply["sleep_log"])
    if sleeps:
        lines.append(
            f"backoff sleeps: {len(sleeps)}, median {statistics.median(sleeps):.2f}s, "
            f"max {sleeps[-1]:.2f}s, total {sum(sleeps):.0f}s"
        )
    buckets: dict[int, Counter[str]] = {}
    for reply in finished:
        for when, kind in reply["failure_log"]:
            buckets.setdefault(int(when - t0), Counter())[kind] += 1
        for when, delay in reply["sleep_log"]:
            buckets.setdefault(int(when - t0), Counter())["sleeps"] += 1
            buckets[int(when - t0)][f"sleep>{SLEEP_SHOWN}s"] += delay > SLEEP_SHOWN
        for when in reply["welcome_times"]:
            buckets.setdefault(int(when - t0), Counter())["welcome"] += 1
        for when in reply["resubscribe_times"]:
            buckets.setdefault(int(when - t0), Counter())["resubscribed"] += 1
    lines += [f"  {second:>3}s: {dict(sorted(counts.items()))}" for second, counts in sorted(buckets.items())]
    return lines


def back_within(back: list[float], clients: int, share: float) -> float:
    """Seconds until ``share`` of ``clients`` were back (the ⌈share·clients⌉-th time); NaN when fewer are."""
    needed = max(1, math.ceil(share * clients - 1e-9))
    ordered = sorted(back)
    return ordered[needed - 1] if len(ordered) >= needed else math.nan


class Publishing:
    """The messages of the storm: published in one harness thread (Django's ORM and the layer's loop stay in it)."""

    def __init__(self, ctx: RunContext, config: Config, topic: str) -> None:
        self.ctx = ctx
        self.topic = topic
        self.product = config.kind == "product"
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="reconnect-publish")
        self.layer: Publisher | None = None
        if self.product:
            self.layer = self.executor.submit(ProductLayerPublisher, ctx.accounts[0]).result(60)

    def while_away(self, prefix: str, rate: float, stop: threading.Event) -> list[str]:
        """Publish ``rate`` messages per second until ``stop`` (none for raw); their texts, in order."""
        if self.layer is None:
            return []
        layer = self.layer

        def loop() -> list[str]:
            tags: list[str] = []
            started = time.monotonic()
            while not stop.is_set() or not tags:
                tag = f"{prefix}away-{len(tags)}"
                layer.publish(tag, self.topic)
                tags.append(tag)
                stop.wait(max(0.0, started + len(tags) / rate - time.monotonic()))
            return tags

        return self.executor.submit(loop).result(self.ctx.sizes.reconnect_timeout + 60)

    def final(self, server: ServerProcess, tag: str) -> None:
        """The message every client must get live after the storm (raw: a ``publish`` frame to ``server``)."""
        if self.layer is not None:
            layer = self.layer
            self.executor.submit(layer.publish, tag, self.topic).result(60)
            return
        publisher = WsPublisher([server.ws_url], self.ctx.cookies[0])
        try:
            publisher.publish(tag, self.topic)
        finally:
            publisher.close()

    def close(self) -> None:
        def done() -> None:
            from django.db import connections

            if self.layer is not None:
                self.layer.close()
            connections.close_all()

        self.executor.submit(done).result(60)
        self.executor.shutdown()


def _restart(
    ctx: RunContext, server: ServerProcess, make_server: Callable[[int], ServerProcess], publishing: Publishing,
    prefix: str,
) -> tuple[ServerProcess, list[str], dict[str, float]]:  # fmt: skip
    """SIGTERM ``server``, publish while it is away, start its successor on its port; (successor, texts, times)."""
    stop = threading.Event()
    away: list[str] = []
    failure: list[BaseException] = []

    def publish_away() -> None:
        try:
            away.extend(publishing.while_away(prefix, ctx.sizes.reconnect_rate, stop))
        except BaseException as exc:  # reported by the harness thread
            failure.append(exc)

    publisher = threading.Thread(target=publish_away, name="reconnect-away", daemon=True)
    t0 = time.monotonic()
    server.terminate()
    publisher.start()
    try:
        exited = server.wait_exit(STOP_GRACE_SECONDS)
        exited_at = time.monotonic()
        server.stop()  # SIGKILL if it lingered
        if not exited:
            ctx.notes.append(f"reconnect: {server.name} did not exit within {STOP_GRACE_SECONDS}s of SIGTERM")
        successor = make_server(server.port)
        successor.start()
        successor.wait_healthy(90.0, interval=0.02)
        ready_at = time.monotonic()
    finally:
        stop.set()
        publisher.join(ctx.sizes.reconnect_timeout + 60)
    if failure:
        raise RuntimeError(f"publishing while the server was away failed: {failure[0]!r}") from failure[0]
    return successor, away, {"t0": t0, "exit_s": exited_at - t0, "restart_s": ready_at - t0}


def _one_storm(
    ctx: RunContext, clients: ClientPool, server: ServerProcess, make_server: Callable[[int], ServerProcess],
    publishing: Publishing, started_failures: int,
) -> tuple[ServerProcess, dict[str, float]]:  # fmt: skip
    n, timeout = ctx.sizes.reconnect, ctx.sizes.reconnect_timeout
    prefix = f"rc-{uuid.uuid4().hex[:12]}-"
    clients.request(60, "arm", prefix)
    successor, away, times = _restart(ctx, server, make_server, publishing, prefix)
    left = max(1.0, timeout - (time.monotonic() - times["t0"]))
    clients.request(left + 60, "wait_back", away, left)
    final = f"{prefix}final"
    publishing.final(successor, final)
    finished = clients.request(FINAL_TIMEOUT + 60, "finish", away, final, FINAL_TIMEOUT)
    back = [t - times["t0"] for reply in finished for t in reply["back_times"]]
    log = ctx.log_dir / f"reconnect-timeline-{server.name}-{server.port}.txt"
    with log.open("a") as out:
        out.write("\n".join(timeline(finished, times)) + "\n\n")
    progress(f"  reconnect timeline in {log}")
    return successor, {
        "reconnect_50_s": back_within(back, n, 0.5),
        "reconnect_99_s": back_within(back, n, 0.99),
        "reconnect_100_s": back_within(back, n, 1.0),
        "reconnect_after_healthz_s": back_within(back, n, 1.0) - times["restart_s"],
        "reconnect_exit_s": times["exit_s"],
        "reconnect_restart_s": times["restart_s"],
        "reconnect_missed": float(len(away)),
        "reconnect_lost": float(total(finished, "lost")),
        "reconnect_lost_resubscribed": float(total(finished, "lost_resubscribed")),
        "reconnect_not_resubscribed": float(total(finished, "not_resubscribed")),
        "reconnect_duplicates": float(total(finished, "duplicates")),
        "reconnect_resent": float(total(finished, "resent")),
        "reconnect_attempts_per_client": total(finished, "attempts") / max(1, total(finished, "disconnected")),
        "reconnect_failures": float(started_failures + total(finished, "not_back")),
    }


def run(
    ctx: RunContext, config: Config, make_server: Callable[[int | None], ServerProcess], reps: int
) -> list[dict[str, float]]:
    """``reps`` restarts of one server process under the same K clients; one figure dict per repetition."""
    n = ctx.sizes.reconnect
    topic = f"room.reconnect-{uuid.uuid4().hex[:12]}"
    results: list[dict[str, float]] = []
    server = make_server(None)
    publishing: Publishing | None = None
    try:
        server.start()
        server.wait_ready()
        publishing = Publishing(ctx, config, topic)
        with pool(ctx, [server.ws_url], n, ctx.distinct_cookies(n), target=reconnect_client.worker_main) as clients:
            timeout = START_TIMEOUT + ctx.sizes.open_timeout * n / ctx.sizes.connect_concurrency
            started = clients.request(timeout + 60, "start", topic, timeout)
            failures = total(started, "failures")
            for sample in sorted({s for reply in started for s in reply["error_samples"]})[:3]:
                ctx.notes.append(f"reconnect start error: {sample}")
            progress(f"  {config.name} reconnect: {total(started, 'ok')} clients subscribed to {topic}")
            settle(ctx, [server])
            for rep in range(reps):
                server, figures = _one_storm(ctx, clients, server, make_server, publishing, failures)
                shown = ", ".join(f"{k}={v:.2f}" for k, v in figures.items())
                progress(f"  {config.name} reconnect rep {rep + 1}/{reps}: {shown}")
                results.append(figures)
                settle(ctx, [server])
            clients.request(120, "close")
    finally:
        if publishing is not None:
            publishing.close()
        server.stop()
    return results
