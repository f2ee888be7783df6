"""One configuration end to end: start its servers, run the scenarios for every repetition, stop them.

Per configuration three servers start together: A (one process: idle memory,
connect, request/response, idle CPU, then the subscribe storm; restarted for
each repetition so memory starts from a fresh process), B (a second process for
fan-out, A + B share Redis and PostgreSQL), and C (two processes on one socket,
for the hold). The reconnect storm (raw and product only) starts, restarts
and stops its own server process.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from functools import partial
from typing import Any

from bench import publishers
from bench.configs import Config
from bench.context import RunContext, progress
from bench.infra import ServerProcess, start_all, stop_all
from bench.publishers import Publisher
from bench.scenarios import connect, fanout, hold, idle, memory, reconnect, reqresp, storm

SCENARIOS = ("memory", "connect", "reqresp", "idle", "fanout", "storm", "reconnect", "hold")
#: The kinds of configuration the reconnect storm runs on: the product and its raw baseline.
RECONNECT_KINDS = ("raw", "product")
PER_SERVER_SCENARIOS: dict[str, Callable[[RunContext, ServerProcess], dict[str, float]]] = {
    "memory": memory.run,
    "connect": connect.run,
    "reqresp": reqresp.run,
    "idle": idle.run,
    "hold": hold.run,
}
HOLD_WORKERS = 2


def _server(ctx: RunContext, config: Config, role: str, workers: int = 1) -> ServerProcess:
    command, extra = config.command(workers)
    return ServerProcess(f"{config.name}-{role}", command, ctx.env | extra, ctx.log_dir)


def _publishers(
    ctx: RunContext, config: Config, servers: Sequence[ServerProcess], stack: ExitStack
) -> dict[str, Publisher]:
    made: dict[str, Publisher] = {}
    for path in config.publish_paths:
        publisher: Publisher
        if path == "ws":
            publisher = publishers.WsPublisher([server.ws_url for server in servers], ctx.cookies[0])
        elif path == "layer" and config.kind == "stock":
            publisher = publishers.StockLayerPublisher(ctx.env["REDIS_URL"])
        elif path == "layer":
            publisher = publishers.ProductLayerPublisher(ctx.accounts[0])
        else:
            if ctx.web is None:
                raise RuntimeError("the web service is not running")
            from tests.support.users import PASSWORD

            publisher = publishers.HttpPublisher(ctx.web.http_url, ctx.accounts[0].username, PASSWORD)
        stack.callback(publisher.close)
        made[path] = publisher
    return made


def _storm_publisher(ctx: RunContext, config: Config, server: ServerProcess, stack: ExitStack) -> Publisher:
    """The storm's publish: a ``publish`` frame over a WebSocket (stock has none: ``group_send``)."""
    publisher: Publisher
    if config.kind == "stock":
        publisher = publishers.StockLayerPublisher(ctx.env["REDIS_URL"])
    else:
        publisher = publishers.WsPublisher([server.ws_url], ctx.cookies[0])
    stack.callback(publisher.close)
    return publisher


class ConfigRun:
    def __init__(
        self, ctx: RunContext, config: Config, scenarios: Sequence[str], reps: int, hold_reps: int | None = None
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.scenarios = [name for name in SCENARIOS if name in scenarios]
        self.reps = reps
        self.hold_reps = hold_reps or reps
        self.figures: list[dict[str, float]] = [{"scenario_errors": 0.0} for _ in range(reps)]
        self.errors: list[str] = []

    def _guarded(self, rep: int, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as exc:
            self.figures[rep]["scenario_errors"] += 1
            message = f"{self.config.name} {what} rep {rep + 1}: {type(exc).__name__}: {exc}"
            self.errors.append(message[:500])
            progress(f"ERROR {message[:300]}")
            traceback.print_exc()
            return None

    def _record(self, rep: int, what: str, figures: dict[str, float] | None) -> None:
        if figures is None:
            return
        self.figures[rep] |= figures
        shown = ", ".join(f"{key}={value:.1f}" for key, value in figures.items() if not math.isnan(value))
        progress(f"  {self.config.name} {what} rep {rep + 1}/{self.reps}: {shown}")

    def _per_server(self, rep: int, server: ServerProcess) -> None:
        for name in ("memory", "connect", "reqresp", "idle"):
            if name in self.scenarios:
                scenario = PER_SERVER_SCENARIOS[name]
                self._record(rep, name, self._guarded(rep, name, partial(scenario, self.ctx, server)))

    def run(self) -> list[dict[str, float]]:
        ctx, config = self.ctx, self.config
        with ExitStack() as stack:
            a = _server(ctx, config, "a")
            servers = [a] if set(self.scenarios) - {"hold", "reconnect"} else []
            b = c = None
            if "fanout" in self.scenarios:
                b = _server(ctx, config, "b")
                servers.append(b)
            if "hold" in self.scenarios:
                c = _server(ctx, config, "hold", HOLD_WORKERS)
                servers.append(c)
            stack.callback(stop_all, servers)
            progress(f"{config.name}: starting {len(servers)} servers ({config.label})")
            start_all(servers)
            for rep in range(self.reps if servers and servers[0] is a else 0):
                if (rep > 0 and "memory" in self.scenarios) or not servers[0].alive():
                    servers[0].stop()
                    servers[0] = _server(ctx, config, "a")
                    start_all(servers[:1])
                self._per_server(rep, servers[0])
            if b is not None:
                pair = [servers[0], b]
                publishers_ = self._guarded(0, "fan-out publishers", lambda: _publishers(ctx, config, pair, stack))
                results = self._guarded(
                    0, "fanout", lambda: fanout.run(ctx, pair, publishers_ or {}, self.reps, config.name)
                )
                for rep, figures in enumerate(results or []):
                    self.figures[rep] |= figures
            if "storm" in self.scenarios:
                self._storm(servers, stack)
            if "reconnect" in self.scenarios and config.kind in RECONNECT_KINDS:
                self._reconnect()
            if c is not None:
                progress(
                    f"  {config.name} hold: {ctx.sizes.hold} connections, {HOLD_WORKERS} server processes on one socket"
                    + (" (WS_WORKERS=2)" if config.kind == "product" else "")
                )
                index = servers.index(c)
                for rep in range(self.hold_reps):
                    if rep > 0 or not servers[index].alive():  # a fresh tree: RSS growth from the same start
                        servers[index].stop()
                        servers[index] = _server(ctx, config, "hold", HOLD_WORKERS)
                        start_all(servers[index : index + 1])
                    held = partial(hold.run, ctx, servers[index])
                    self._record(rep, "hold", self._guarded(rep, "hold", held))
        return self.figures

    def _storm(self, servers: list[ServerProcess], stack: ExitStack) -> None:
        """The subscribe storm on server A (restarted first if it died)."""
        ctx, config = self.ctx, self.config
        if not servers[0].alive():
            servers[0].stop()
            servers[0] = _server(ctx, config, "a")
            start_all(servers[:1])
        server = servers[0]
        publisher = self._guarded(0, "storm publisher", lambda: _storm_publisher(ctx, config, server, stack))
        if publisher is None:
            return
        progress(f"  {config.name} storm: {ctx.sizes.storm} distinct users subscribe to one topic at once")
        results = self._guarded(0, "storm", lambda: storm.run(ctx, server, publisher, self.reps, config.name))
        for rep, figures in enumerate(results or []):
            self.figures[rep] |= figures

    def _reconnect(self) -> None:
        """The reconnect storm, on a server process of its own (restarted on its port every repetition)."""
        ctx, config = self.ctx, self.config
        command, extra = config.command(1)

        def make_server(port: int | None) -> ServerProcess:
            return ServerProcess(f"{config.name}-reconnect", command, ctx.env | extra, ctx.log_dir, port)

        progress(f"  {config.name} reconnect storm: {ctx.sizes.reconnect} clients (wsclient), {self.reps} restarts")
        results = self._guarded(0, "reconnect", lambda: reconnect.run(ctx, config, make_server, self.reps))
        for rep, figures in enumerate(results or []):
            self.figures[rep] |= figures
