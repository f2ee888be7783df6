"""Processes the harness starts: PostgreSQL and Redis (from tests.support.servers), servers under test.

Every server runs in its own session (so a Ctrl-C in the terminal reaches only
the harness, which then stops them in order) and is stopped with SIGTERM,
then SIGKILL of its process group after a grace period.
"""

from __future__ import annotations

import atexit
import compileall
import contextlib
import functools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from bench import proctree
from tests.support.servers import HOST, PostgresServer, RedisServer, free_port

PYTHON = sys.executable
STOP_GRACE_SECONDS = 20.0
ROOT = Path(__file__).resolve().parents[1]
# What the images compile at build time (Dockerfile.ws/.web: UV_COMPILE_BYTECODE=1, compileall of the code).
PROJECT_PACKAGES = ("shared", "web_service", "ws_service", "wsclient", "bench")


def precompile(directories: Sequence[Path] | None = None) -> bool:
    """Write the bytecode of the environment and the project, as the images have it; whether all compiled.

    The images run with ``PYTHONDONTWRITEBYTECODE=1`` on bytecode compiled at
    build time. A checkout's virtual environment has none, and under the same
    variable every server start would compile each module it imports from
    source (about a second of CPU for the product, far less for the raw
    server): a restart would be measured slower than a deployed one.
    Unchanged files are skipped, so only the first run pays.
    """
    if directories is None:
        site = {Path(sysconfig.get_path(name)) for name in ("purelib", "platlib")}
        directories = [*sorted(site), *(ROOT / package for package in PROJECT_PACKAGES)]
    return all(compileall.compile_dir(directory, quiet=2, workers=0) for directory in directories)


@functools.cache
def static_root() -> str:
    """Where this run's ``collectstatic`` writes (``bench.accounts.setup_django``), as the web image's build does.

    Pages use ``{% static %}`` with the manifest storage, which needs the
    collected files: a fresh checkout has none, and the login page would fail.
    """
    root = tempfile.mkdtemp(prefix="bench-static-")
    atexit.register(shutil.rmtree, root, True)
    return root


def bench_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment every server gets: real settings, limits raised so the load itself is not refused."""
    return {
        "DJANGO_SETTINGS_MODULE": "shared.settings",
        "DJANGO_STATIC_ROOT": static_root(),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFG",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The benchmark clients' fixed Origin (bench.clients.ORIGIN); the ws service trusts only exact origins.
        "DJANGO_CSRF_TRUSTED_ORIGINS": "http://127.0.0.1",
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # One connection per benchmark client, many per user: the per-user cap and the
        # per-connection rate limit would otherwise refuse the benchmark's own load.
        "WS_MAX_CONNECTIONS_PER_USER": "1000000",
        "WS_RATE_LIMIT_PER_SECOND": "1000000",
        "WS_RATE_LIMIT_BURST": "1000000",
        # Every benchmark client connects from 127.0.0.1: one address, one handshake bucket.
        "WS_HANDSHAKES_PER_ADDRESS_PER_SECOND": "1000000",
        "WS_HANDSHAKE_BURST_PER_ADDRESS": "1000000",
        "WS_DRAIN_TIMEOUT": "5",
        "METRICS_PORT": "0",
    }


class Backing:
    """Throwaway PostgreSQL and Redis on free loopback ports."""

    def __init__(self) -> None:
        self.postgres = PostgresServer()
        self.redis = RedisServer()

    def start(self) -> None:
        self.postgres.init()
        self.redis.start()

    def stop(self) -> None:
        try:
            self.redis.destroy()
        finally:
            self.postgres.destroy()


class ServerProcess:
    """One server under test (a process tree), on its own loopback port."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str], log_dir: Path, port: int | None = None
    ) -> None:
        self.name = name
        self.port = port or free_port()
        # A ``{metrics_port}`` placeholder in the environment gets a free port of its own (the product's /metrics).
        self.metrics_port = free_port() if any("{metrics_port}" in value for value in env.values()) else None
        self.command = [part.format(port=self.port) for part in command]
        self.env = {key: value.format(port=self.port, metrics_port=self.metrics_port) for key, value in env.items()}
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws/"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def full_collections(self) -> float:
        """Full (generation 2) garbage collections of the process so far, from its /metrics (NaN without them).

        prometheus_client's default registry reports ``python_gc_collections_total`` per generation; a
        server without a metrics port, or several workers (multi-process metrics), reports none.
        """
        if self.metrics_port is None:
            return math.nan
        try:
            with httpx.Client(trust_env=False, timeout=5.0) as client:
                text = client.get(f"http://{HOST}:{self.metrics_port}/metrics").text
        except httpx.HTTPError:
            return math.nan
        found = re.search(r'^python_gc_collections_total\{generation="2"\} (\S+)$', text, re.MULTILINE)
        return float(found.group(1)) if found else math.nan

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the harness's own server commands
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """``GET /healthz`` answers 200 (any worker), then the whole tree goes quiet (imports done)."""
        deadline = time.monotonic() + timeout
        self.wait_healthy(timeout)
        proctree.wait_quiet([self.pid], timeout=max(1.0, deadline - time.monotonic()))

    def wait_healthy(self, timeout: float, interval: float = 0.1) -> None:
        """Until ``GET /healthz`` answers 200 (polled every ``interval`` s); raise if it exits or times out."""
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
                try:
                    if client.get(f"{self.http_url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready within {timeout}s: {self.log_tail()}")
                time.sleep(interval)

    def wait_exit(self, timeout: float) -> bool:
        """Whether the server's process has exited (or never ran) within ``timeout`` seconds."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kib(self) -> int:
        return proctree.tree_rss_kib(self.pid)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def terminate(self) -> None:
        """SIGTERM only (the product drains); ``stop`` waits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM (the product drains), then SIGKILL to the process group if it lingers."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only what this server started
        process.wait(timeout=10)


def stop_all(servers: Sequence[ServerProcess]) -> None:
    """Stop several servers at once (their drains overlap)."""
    for server in servers:
        server.terminate()
    for server in servers:
        server.stop()


def start_all(servers: Sequence[ServerProcess], timeout: float = 90.0) -> None:
    """Start several servers at once (their imports overlap), then wait for each."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready(timeout)
