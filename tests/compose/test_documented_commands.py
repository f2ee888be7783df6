"""The compose commands of the README and docs/operations.md, run as written on a real stack.

A newcomer's path: the stack comes up with the README's own ``docker compose
up`` line and the demo users come from its ``create_demo_users`` line; the
two printed users log in through the proxy and chat; the login and Python
recipes of docs/clients.md run against the real nginx proxy. Then the
operations page's blocks: a superuser, a push, more replicas, ``down -v``.

Each documented command runs under ``bash`` exactly as written. A shell
function ``docker`` adds only this project's name, env file and port to
``docker compose`` (a test must never touch a developer's stack).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose.support import (
    BUILD_TIMEOUT,
    COMMAND_TIMEOUT,
    DOWN_TIMEOUT,
    UP_TIMEOUT,
    ComposeError,
    ComposeProject,
    clean_env,
    docker_status,
    free_port,
    requires_engine,
)
from tests.support.live import fetch_ticket, login, open_ws, recv_type, send_json
from tests.support.recipes import run_script, script

pytestmark = requires_engine()

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
SH_BLOCK = re.compile(r"```sh\n(.*?)\n```", re.DOTALL)
PRINTED_USER = re.compile(r"^(alice|bob) (\S+) \(", re.MULTILINE)


def documented_commands(page: Path) -> list[str]:
    """Every command line of ``page``'s sh blocks, continuations joined, comments kept."""
    blocks: list[str] = SH_BLOCK.findall(page.read_text())
    return [
        line.strip()
        for block in blocks
        for line in block.replace("\\\n", " ").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def documented(page: Path, containing: str) -> str:
    (command,) = [line for line in documented_commands(page) if containing in line]
    return command


def documented_block(page: Path, containing: str) -> str:
    blocks: list[str] = [block for block in SH_BLOCK.findall(page.read_text()) if containing in block]
    (block,) = blocks
    return block


def run_as_written(project: ComposeProject, text: str, timeout: float) -> str:
    """``text`` under ``bash -e``, with ``docker compose`` bound to this project, without a terminal."""
    project_arguments = shlex.join(project.command()[2:])
    prelude = (
        'docker() { if [ "$1" = compose ]; then shift; '
        f'command docker compose {project_arguments} "$@"; else command docker "$@"; fi; }}\n'
    )
    result = subprocess.run(
        ["bash", "-ec", prelude + text],
        cwd=ROOT,
        env=project.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise ComposeError(f"{text!r} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def compose_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """Up with the README's line; ``down -v`` after the module."""
    status = docker_status()
    if not status.engine:
        pytest.fail(f"CI=true but no usable Docker engine: {status.detail}")
    env_file = tmp_path_factory.mktemp("compose-readme") / "test.env"
    port = free_port()
    env_file.write_text(f"HTTP_PORT={port}\n")
    project = ComposeProject(
        name=f"wsreadme{uuid.uuid4().hex[:10]}", http_port=port, env_file=env_file, env=clean_env(DOCKER_BUILDKIT="1")
    )
    try:
        try:
            run_as_written(project, documented(README, "docker compose up"), BUILD_TIMEOUT + UP_TIMEOUT)
        except ComposeError as exc:
            raise ComposeError(f"{exc}\n--- containers\n{project.diagnostics()}") from None
        yield project
    finally:
        project.run("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=DOWN_TIMEOUT, check=False)


@pytest.fixture(scope="module")
def demo_passwords(compose_stack: ComposeProject) -> dict[str, str]:
    output = run_as_written(compose_stack, documented(README, "create_demo_users"), COMMAND_TIMEOUT)
    printed = dict(PRINTED_USER.findall(output))
    assert sorted(printed) == ["alice", "bob"], output
    return printed


def test_the_front_page_sends_a_newcomer_to_the_documented_login_url(compose_stack: ComposeProject) -> None:
    readme = README.read_text()
    assert f"{compose_stack.base_url.replace(str(compose_stack.http_port), '8000')}/accounts/login/" in readme
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"{compose_stack.base_url}/"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == f"302 {compose_stack.base_url}/accounts/login/?next=/", result.stdout


async def test_the_two_demo_users_chat(compose_stack: ComposeProject, demo_passwords: dict[str, str]) -> None:
    """alice and bob, logged in through the proxy, see each other's messages."""
    ws_base = compose_stack.ws_url.removesuffix("/ws/")
    sockets = {}
    for name in ("alice", "bob"):
        client = await login(compose_stack.base_url, name, demo_passwords[name])
        ticket = (await fetch_ticket(client))["ticket"]
        await client.aclose()
        sockets[name] = await open_ws(ws_base, ticket=ticket)
        welcome = await recv_type(sockets[name], "welcome", 15)
        assert welcome["user"]["username"] == name
        await send_json(sockets[name], {"type": "subscribe", "topic": "room.lobby"})
        await recv_type(sockets[name], "subscribed", 15)
    try:
        await send_json(sockets["alice"], {"type": "publish", "topic": "room.lobby", "text": "hi bob", "ref": "a1"})
        message = await recv_type(sockets["bob"], "message", 15)
        assert (message["author"]["username"], message["text"]) == ("alice", "hi bob")
    finally:
        await asyncio.gather(*(socket.close() for socket in sockets.values()))


@pytest.mark.parametrize("recipe", ["login", "no-csrf-header", "no-origin", "python"])
def test_client_recipes_through_the_compose_proxy(
    compose_stack: ComposeProject, demo_passwords: dict[str, str], recipe: str, tmp_path: Path
) -> None:
    """docs/clients.md against the real nginx proxy: the documented Origin and the rotated csrftoken."""
    text = script(recipe, compose_stack.http_port, "bob", demo_passwords["bob"])
    result = run_script(text, tmp_path)
    assert result.returncode == 0, f"{recipe}: {result.stdout}\n{result.stderr}"
    expected = {
        "login": "login: 302",
        "no-csrf-header": "without X-CSRFToken: 403",
        "no-origin": f"send Origin: {compose_stack.base_url} (or one in",
        "python": '"type": "ack"',
    }
    assert expected[recipe] in result.stdout, result.stdout


def test_the_superuser_block_of_the_operations_page(compose_stack: ComposeProject) -> None:
    output = run_as_written(compose_stack, documented_block(OPERATIONS, "createsuperuser"), COMMAND_TIMEOUT)
    assert "Superuser created successfully" in output, output


def test_push_scale_and_stop_commands_of_the_operations_page_come_last(compose_stack: ComposeProject) -> None:
    """ws_push, then ``--scale ws=3`` (three healthy replicas), then ``down -v``: nothing is left."""
    output = run_as_written(compose_stack, documented(OPERATIONS, "ws_push"), COMMAND_TIMEOUT)
    assert "broadcast sent" in output, output
    run_as_written(compose_stack, documented(OPERATIONS, "--scale ws=3"), UP_TIMEOUT)
    assert len(compose_stack.containers("ws")) == 3
    run_as_written(compose_stack, documented(OPERATIONS, "down -v"), DOWN_TIMEOUT)
    left = compose_stack.run("ps", "--all", "--quiet").stdout.split()
    assert not left, left
