"""Helpers for the container tests: the Docker CLI and one compose project.

Self-contained on purpose (nothing from tests/conftest.py or tests/support is
used): these tests talk to containers only, never to the test database.

Whether Docker is usable is decided once per session. Without a reachable
engine the tests that need one are skipped, except when ``CI=true``: CI runs
../shared/containers/prepare.sh first, so there an unreachable engine is a
failure, never a silent skip.

Compose commands get an environment of their own: only Docker's variables
are passed through from the test process (pytest-env's DJANGO_* values, or a
developer's .env, must not leak into the containers).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"

# Variables a Docker client may need; everything else stays out of compose's
# interpolation environment.
PASSTHROUGH_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "DOCKER_BUILDKIT",
    "BUILDKIT_PROGRESS",
)

BUILD_TIMEOUT = 180.0
UP_TIMEOUT = 90.0
DOWN_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0

# Open WebSockets per client address at the proxy in the test stack, lowered
# from compose's 100 so that a test can reach it (all test clients share one address).
WS_CONNECTIONS_PER_IP = 16


def running_in_ci() -> bool:
    """CI sets ``CI=true``; there a missing Docker engine fails the tests."""
    return os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True, slots=True)
class DockerStatus:
    """What this machine offers: the CLI with Compose v2, and a reachable engine."""

    compose: bool
    engine: bool
    detail: str


@functools.cache
def docker_status() -> DockerStatus:
    """Probe the Docker CLI, the Compose plugin and the engine (once per session)."""
    if shutil.which("docker") is None:
        return DockerStatus(compose=False, engine=False, detail="no docker command on PATH")
    env = clean_env()
    try:
        version = subprocess.run(
            ["docker", "compose", "version", "--short"], env=env, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return DockerStatus(compose=False, engine=False, detail="`docker compose version` timed out")
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2."):
        return DockerStatus(compose=False, engine=False, detail=f"no Compose v2 plugin: {version.stderr.strip()}")
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], env=env, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return DockerStatus(compose=True, engine=False, detail="`docker info` timed out")
    if info.returncode != 0:
        return DockerStatus(compose=True, engine=False, detail=f"engine unreachable: {info.stderr.strip()[:300]}")
    return DockerStatus(compose=True, engine=True, detail=f"engine {info.stdout.strip()}")


def _skip_unless(available: bool, what: str) -> pytest.MarkDecorator:
    """Skip when ``what`` is missing, unless in CI, where the fixtures fail instead."""
    return pytest.mark.skipif(
        not available and not running_in_ci(),
        reason=f"{what} not available ({docker_status().detail}); CI=true turns this into a failure",
    )


def requires_compose() -> pytest.MarkDecorator:
    """Mark for tests that need the docker CLI with Compose v2 (no engine)."""
    return _skip_unless(docker_status().compose, "Docker Compose v2")


def requires_engine() -> pytest.MarkDecorator:
    """Mark for tests that need a reachable Docker engine."""
    return _skip_unless(docker_status().engine, "a Docker engine")


def clean_env(**extra: str) -> dict[str, str]:
    """Docker's own variables from this process, plus ``extra``; nothing else."""
    env = {name: os.environ[name] for name in PASSTHROUGH_ENV if name in os.environ}
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ComposeError(AssertionError):
    """A docker compose command failed; carries its output."""


@dataclass
class ComposeProject:
    """One compose project of compose.yaml under a unique name and port."""

    name: str
    http_port: int
    env_file: Path
    env: dict[str, str] = field(default_factory=dict)
    # The project directory and its compose files (a copy with compose.dev.yaml for the development loop).
    directory: Path = ROOT
    files: tuple[str, ...] = (COMPOSE_FILE.name,)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws/"

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker compose -p NAME -f FILE... --env-file FILE ARGS``."""
        return run_command(self.command(*args), env=self.env, timeout=timeout, check=check)

    def command(self, *args: str) -> list[str]:
        """The ``docker compose`` command line of this project with ``args`` (for a process of one's own)."""
        return [
            "docker",
            "compose",
            "--project-name",
            self.name,
            *(argument for name in self.files for argument in ("--file", str(self.directory / name))),
            "--project-directory",
            str(self.directory),
            "--env-file",
            str(self.env_file),
            *args,
        ]

    def exec(
        self,
        service: str,
        *command: str,
        index: int | None = None,
        timeout: float = COMMAND_TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in a running container of ``service`` (no TTY)."""
        where = ["--index", str(index)] if index is not None else []
        return self.run("exec", "-T", *where, service, *command, timeout=timeout, check=check)

    def probe(self, service: str, url: str, *, index: int | None = None) -> tuple[int | None, str]:
        """``python -m shared.probe URL`` inside ``service``: ``(HTTP status, output line)``."""
        result = self.exec(service, "python", "-m", "shared.probe", url, index=index, check=False, timeout=30)
        line = result.stdout.strip()
        # "URL -> STATUS BODY" (STATUS is "---" when nothing answered)
        _, _, rest = line.partition(" -> ")
        status_text = rest.split(" ", 1)[0]
        return (int(status_text) if status_text.isdigit() else None), line or result.stderr.strip()

    def containers(self, service: str, *, all_states: bool = False) -> list[dict[str, Any]]:
        """``docker inspect`` of the service's containers, ordered by container number."""
        ids = self.run("ps", *(["--all"] if all_states else []), "--quiet", service).stdout.split()
        if not ids:
            return []
        inspected: list[dict[str, Any]] = json.loads(
            run_command(["docker", "inspect", *ids], env=self.env, timeout=COMMAND_TIMEOUT).stdout
        )
        return sorted(inspected, key=lambda c: int(c["Config"]["Labels"].get("com.docker.compose.container-number", 0)))

    def logs(self, container_id: str) -> str:
        """Everything one container wrote to stdout and stderr so far."""
        result = run_command(["docker", "logs", container_id], env=self.env, timeout=COMMAND_TIMEOUT)
        return result.stdout + result.stderr

    def diagnostics(self) -> str:
        """State and recent logs of every container, for failure reports."""
        state = self.run("ps", "--all", check=False).stdout
        logs = self.run("logs", "--no-color", "--tail", "40", check=False).stdout
        return f"{state}\n{logs}"


def run_command(
    command: Sequence[str], *, env: dict[str, str], timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command with a time limit; on ``check``, fail with its output."""
    try:
        result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        raise ComposeError(f"{' '.join(command)} did not finish within {timeout:g}s") from exc
    if check and result.returncode != 0:
        raise ComposeError(
            f"{' '.join(command)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def wait_until[T](attempt: Callable[[], T | None], *, timeout: float, interval: float = 1.0, what: str) -> T:
    """Call ``attempt`` until it returns something other than ``None``; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result: T | None = attempt()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True, slots=True)
class Superuser:
    """The account the stack's superuser is created with."""

    username: str
    password: str
    email: str
