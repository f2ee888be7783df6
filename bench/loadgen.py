"""The parent's side of the load generators: start client processes, send commands, gather replies."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

from bench.clients import WorkerSpec, worker_main

#: A client process's entry point: its share of the connections and the pipe its commands come from.
WorkerMain = Callable[[WorkerSpec, Connection], None]
# Per process: stays well under the 20,000 open-files limit (sockets + interpreter files).
MAX_CONNECTIONS_PER_PROCESS = 9_000
SOURCE_IPS = tuple(f"127.0.0.{i}" for i in range(2, 18))


def _context() -> multiprocessing.context.ForkServerContext:
    """Fork server with the client module preloaded: a client process starts in milliseconds, and never
    inherits the harness's own state (Django, database connections, event loops)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bench.clients"])
    return context


class ClientError(RuntimeError):
    """A client process died or did not answer in time."""


class ClientPool:
    """``total`` connections to ``urls`` (round robin), spread over several client processes."""

    def __init__(
        self,
        urls: Sequence[str],
        total: int,
        cookies: Sequence[str],
        *,
        processes: int,
        concurrency: int,
        open_timeout: float,
        target: WorkerMain = worker_main,
    ) -> None:
        """``target`` runs in each client process (default: the raw ``websockets`` clients of ``bench.clients``)."""
        count = max(processes, math.ceil(total / MAX_CONNECTIONS_PER_PROCESS))
        count = max(1, min(count, total))
        context = _context()
        self.pipes: list[Connection] = []
        self.processes: list[BaseProcess] = []
        offset = 0
        for index in range(count):
            share = total // count + (1 if index < total % count else 0)
            spec = WorkerSpec(
                urls=tuple(urls),
                count=share,
                offset=offset,
                cookies=tuple(cookies),
                source_ips=SOURCE_IPS,
                concurrency=max(1, concurrency // count),
                open_timeout=open_timeout,
            )
            offset += share
            parent, child = context.Pipe()
            process = context.Process(target=target, args=(spec, child), daemon=True, name=f"bench-client-{index}")
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)
        self.request(60, "ping")

    def send(self, *command: Any) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        """One reply from every client process, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        replies: list[dict[str, Any]] = []
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            while not pipe.poll(0.2):
                if not process.is_alive():
                    raise ClientError(f"{process.name} exited with {process.exitcode}")
                if time.monotonic() > deadline:
                    raise ClientError(f"{process.name} did not answer within {timeout:.0f}s")
            replies.append(pipe.recv())
        return replies

    def request(self, timeout: float, *command: Any) -> list[dict[str, Any]]:
        self.send(*command)
        return self.collect(timeout)

    def stop(self, grace: float = 30.0) -> None:
        """Ask every client process to close its sockets and exit; terminate those still running after ``grace``."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        deadline = time.monotonic() + grace
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(5)
        for pipe in self.pipes:
            pipe.close()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop(30.0 if kind is None else 3.0)  # after an error or Ctrl-C a client may be mid-command
