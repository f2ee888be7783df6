"""Real PostgreSQL, Redis and Daphne processes on free loopback ports, for tests.

Nothing here assumes a system service: servers are started from local
binaries in temporary directories and stopped at the end of the session. A
missing binary fails the run with a message naming what to install.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {HOST}:{port} within {timeout}s")


def _find_binary(name: str, extra_globs: Sequence[str], install_hint: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for pattern in extra_globs:
        matches = sorted(glob.glob(pattern), reverse=True)
        if matches:
            return matches[0]
    pytest.fail(f"{name} not found: {install_hint}", pytrace=False)


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust auth on loopback, fsync off)."""

    user = "app"
    database = "app"

    def __init__(self) -> None:
        hint = "install the PostgreSQL server (Debian: apt-get install postgresql)"
        self.initdb = _find_binary("initdb", ["/usr/lib/postgresql/*/bin/initdb"], hint)
        self.pg_ctl = _find_binary("pg_ctl", ["/usr/lib/postgresql/*/bin/pg_ctl"], hint)
        self.base = Path(tempfile.mkdtemp(prefix="ws-tests-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root: run the cluster as the postgres user.
            runuser = _find_binary("runuser", [], "install util-linux (runuser)")
            shutil.chown(self.base, user="postgres")
            self._as_postgres = [runuser, "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@{HOST}:{self.port}/{self.database}"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stderr}\n{log[-2000:]}")

    def init(self) -> None:
        self._run(self.initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        with psycopg.connect(host=HOST, port=self.port, user=self.user, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -k {self.base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    """A throwaway redis-server without persistence."""

    def __init__(self) -> None:
        self.binary = _find_binary(
            "redis-server", ["/usr/bin/redis-server"], "install Redis (Debian: apt-get install redis-server)"
        )
        self.dir = Path(tempfile.mkdtemp(prefix="ws-tests-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--maxclients", "20000",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=10, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class DaphneServer:
    """A real server process for one of the services, on a free loopback port."""

    def __init__(self, name: str, command: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        """``command`` may contain ``{port}``; it is filled in with the chosen port."""
        self.name = name
        self.port = free_port()
        # The internal /metrics listener (METRICS_PORT), never the public port.
        self.metrics_port = free_port()
        self.command = [part.format(port=self.port) for part in command]
        self.env = {"METRICS_PORT": str(self.metrics_port)} | {
            key: value.format(port=self.port) for key, value in env.items()
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def web(cls, env: Mapping[str, str], log_path: Path) -> DaphneServer:
        """The web service through its real launcher (``python -m web_service``), as Dockerfile.web runs it."""
        return cls(
            "web", [sys.executable, "-m", "web_service"], {**env, "WEB_BIND": HOST, "WEB_PORT": "{port}"}, log_path
        )

    @classmethod
    def ws(cls, env: Mapping[str, str], log_path: Path) -> DaphneServer:
        """The ws service through its real launcher (``python -m ws_service``)."""
        return cls("ws", [sys.executable, "-m", "ws_service"], {**env, "WS_BIND": HOST, "WS_PORT": "{port}"}, log_path)

    @classmethod
    @contextlib.contextmanager
    def running_ws(cls, env: Mapping[str, str], log_path: Path, kind: str, **overrides: str) -> Iterator[DaphneServer]:
        """A ws process on server ``kind`` (``WS_SERVER``) with ``overrides`` on top of ``env``; stopped at the end."""
        with cls.running_ws_env({**env, "WS_SERVER": kind, **overrides}, log_path) as server:
            yield server

    @classmethod
    @contextlib.contextmanager
    def running_replicas(
        cls, env: Mapping[str, str], log_dir: Path, name: str, count: int, **overrides: str
    ) -> Iterator[list[DaphneServer]]:
        """``count`` ws processes sharing ``env`` (logs ``<name>-<i>.log``); every started one is stopped at the end."""
        with contextlib.ExitStack() as stack:
            yield [
                stack.enter_context(cls.running_ws_env({**env, **overrides}, log_dir / f"{name}-{i}.log"))
                for i in range(count)
            ]

    @classmethod
    @contextlib.contextmanager
    def running_ws_env(cls, env: Mapping[str, str], log_path: Path) -> Iterator[DaphneServer]:
        """A ws process with exactly ``env`` (its ``WS_SERVER`` or the default); stopped at the end."""
        server = cls.ws(env, log_path)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.http_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not answer /healthz: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: a crash, with no cleanup at all."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
