"""Several server processes per container on one listening socket (``WS_WORKERS`` > 1).

The supervisor binds the socket, starts the workers (each ``python -m
ws_service`` with the socket's file descriptor in ``WS_LISTEN_FD``), serves
the Prometheus port for all of them from a shared ``PROMETHEUS_MULTIPROC_DIR``,
restarts a worker that dies, and on SIGTERM/SIGINT passes the signal on so
every worker drains, then exits once they have.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from types import FrameType

from ws_service.launcher.options import LISTEN_BACKLOG, ServerOptions

logger = logging.getLogger("ws.supervisor")

LISTEN_FD_VARIABLE = "WS_LISTEN_FD"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# A worker that keeps dying is not restarted for ever: this many crashes within the window stop the container.
CRASH_LIMIT = 5
CRASH_WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.2
# Time on top of the drain for workers to exit before they are killed.
EXIT_MARGIN_SECONDS = 5.0


def listening_socket(bind: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A bound, listening TCP socket the workers inherit."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.sock = listening_socket(options.bind, options.port)
        self.metrics_dir = tempfile.mkdtemp(prefix="ws-metrics-")
        self.workers: dict[int, subprocess.Popen[bytes]] = {}  # slot -> process
        self.crashes: deque[float] = deque(maxlen=CRASH_LIMIT)
        self.stopping = False

    def _spawn(self, slot: int) -> None:
        env = {
            **os.environ,
            LISTEN_FD_VARIABLE: str(self.sock.fileno()),
            MULTIPROC_VARIABLE: self.metrics_dir,
            "WS_WORKER_SLOT": str(slot),
        }
        self.workers[slot] = subprocess.Popen(
            [sys.executable, "-m", "ws_service"], env=env, pass_fds=(self.sock.fileno(),)
        )
        logger.info("worker %d started (pid %d)", slot, self.workers[slot].pid)

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            logger.info("stopping %d workers (signal %d)", len(self.workers), signum)
            # The workers stop listening as they start draining; the port closes once no process holds it.
            self.sock.close()
        self.stopping = True
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signum)

    def _reap(self) -> None:
        from prometheus_client import multiprocess

        for slot, process in list(self.workers.items()):
            code = process.poll()
            if code is None:
                continue
            multiprocess.mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            del self.workers[slot]
            if self.stopping:
                continue
            now = time.monotonic()
            self.crashes.append(now)
            logger.error("worker %d (pid %d) exited with %s; restarting", slot, process.pid, code)
            if len(self.crashes) == CRASH_LIMIT and now - self.crashes[0] < CRASH_WINDOW_SECONDS:
                logger.critical("%d worker crashes within %.0fs; giving up", CRASH_LIMIT, CRASH_WINDOW_SECONDS)
                self._signal(signal.SIGTERM, None)
                raise SystemExit(1)
            self._spawn(slot)

    def run(self) -> int:
        os.environ[MULTIPROC_VARIABLE] = self.metrics_dir  # before prometheus_client is imported here
        if self.options.metrics_port:
            from shared.metrics_server import start_metrics_server

            start_metrics_server(self.options.metrics_port, self.options.metrics_bind)
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        for slot in range(self.options.workers):
            self._spawn(slot)
        logger.info(
            "ws service (%s, %d workers) listening on %s:%s",
            self.options.server,
            self.options.workers,
            self.options.bind,
            self.options.port,
        )
        deadline: float | None = None
        try:
            while self.workers:
                self._reap()
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + self.options.drain_timeout + EXIT_MARGIN_SECONDS
                if deadline is not None and time.monotonic() > deadline:
                    for process in self.workers.values():
                        process.kill()
                time.sleep(POLL_SECONDS)
        finally:
            self.sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return 0
