"""Fixtures for the container tests: one compose project per test module.

The project gets a unique name, a free HTTP_PORT on 127.0.0.1, an env file of
its own instead of a developer's .env, and is always taken down with
``down --volumes --remove-orphans``. Builds and start-up are bounded so that
together they stay within pytest-timeout's limit for the first test.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from tests.compose.support import (
    BUILD_TIMEOUT,
    DOWN_TIMEOUT,
    ROOT,
    UP_TIMEOUT,
    WS_CONNECTIONS_PER_IP,
    ComposeError,
    ComposeProject,
    Superuser,
    clean_env,
    docker_status,
    free_port,
)


@pytest.fixture(scope="module")
def superuser_account() -> Superuser:
    """Credentials handed to the containers as DJANGO_SUPERUSER_* (a fresh password per run)."""
    return Superuser(username="compose-admin", password=f"pw-{uuid.uuid4().hex}", email="admin@example.com")


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory: pytest.TempPathFactory, superuser_account: Superuser) -> Iterator[ComposeProject]:
    """Build the images and bring the whole stack up healthy; ``down -v`` after the module."""
    status = docker_status()
    if not status.engine:
        # Only reached in CI: elsewhere requires_engine() has skipped the test.
        pytest.fail(f"CI=true but no usable Docker engine: {status.detail}. Run ../shared/containers/prepare.sh.")
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    port = free_port()
    env_file.write_text(
        f"HTTP_PORT={port}\n"
        f"DJANGO_SUPERUSER_USERNAME={superuser_account.username}\n"
        f"DJANGO_SUPERUSER_PASSWORD={superuser_account.password}\n"
        f"DJANGO_SUPERUSER_EMAIL={superuser_account.email}\n"
        f"PROXY_WS_CONNECTIONS_PER_IP={WS_CONNECTIONS_PER_IP}\n"
    )
    project = ComposeProject(
        name=f"wstest{uuid.uuid4().hex[:10]}",
        http_port=port,
        env_file=env_file,
        env=clean_env(DOCKER_BUILDKIT="1"),
    )
    try:
        start_project(project)
        yield project
    finally:
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=DOWN_TIMEOUT, check=False)


# What a clean clone has that the development project needs; the rest (the
# virtual environment, caches, a developer's .env) stays out of the copy.
COPY_IGNORED: tuple[str, ...] = (".git", ".venv", ".tools", ".env", "node_modules", "__pycache__", "*.pyc")
COPY_IGNORED += (".*_cache", ".hypothesis", "bench", "tests", "docs", "staticfiles")


def start_project(project: ComposeProject) -> None:
    """Build (from the cache when nothing changed) and bring the project up healthy."""
    project.run("build", timeout=BUILD_TIMEOUT)
    try:
        project.run("up", "--detach", "--wait", timeout=UP_TIMEOUT)
    except ComposeError as exc:
        raise ComposeError(f"{exc}\n--- containers\n{project.diagnostics()}") from None


@pytest.fixture(scope="module")
def dev_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """A second project on the machine: a copy of the repository under compose.dev.yaml, another HTTP_PORT.

    Started by the first test that asks for it; ``down -v`` after the module.
    The copy's code can be edited (the development loop) without touching the checkout.
    """
    directory = tmp_path_factory.mktemp("dev") / "clone"
    shutil.copytree(ROOT, directory, ignore=shutil.ignore_patterns(*COPY_IGNORED))
    env_file = directory.parent / "dev.env"
    port = free_port()
    env_file.write_text(f"HTTP_PORT={port}\n")
    project = ComposeProject(
        name=f"wsdev{uuid.uuid4().hex[:10]}",
        http_port=port,
        env_file=env_file,
        env=clean_env(DOCKER_BUILDKIT="1"),
        directory=directory,
        files=("compose.yaml", "compose.dev.yaml"),
    )
    try:
        start_project(project)
        yield project
    finally:
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "10", timeout=DOWN_TIMEOUT, check=False)
