"""The JS client (clients/js/) passes its Node tests against the real services.

``node --test test/`` runs in clients/js with the live endpoints in its
environment (see clients/js/test-support/live.js): ``WS_URL`` (the ws
service's ``/ws/``), ``WEB_URL`` (the web service) and ``TEST_USERS`` (JSON:
users created here, with their passwords; the Node tests log in through the
real login form, connect with the session cookie or a ticket, publish over
WebSocket and HTTP, and log out), plus ``CAPPED_WS_URL`` and
``REPLAY_MAX_MESSAGES`` for a second ws service with a small replay limit. ``npm ci`` installs the one dev dependency
(``ws``: Node 20 has no global WebSocket) when node_modules is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from pytest_django.fixtures import Settings as SettingsWrapper

from shared import presence
from shared.presence import PresenceEntry
from shared.redis_client import get_redis
from tests.clients.conftest import CAPPED_REPLAY_MESSAGES
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user

pytestmark = pytest.mark.django_db(transaction=True)

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
NPM_TIMEOUT = 300
NODE_TIMEOUT = 240
# Users in the crowd topic: at ~130 bytes each, more than one 64 KiB frame holds.
CROWD_SIZE = 700
INSTALL_HINT = "install Node.js >= 20 with npm (Debian: apt-get install nodejs npm)"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: the JS client tests need it; {INSTALL_HINT}", pytrace=False)
    return path


def _run(command: list[str], *, env: dict[str, str] | None = None, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, cwd=CLIENT_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
        pytest.fail(f"{' '.join(command)} did not finish within {timeout}s:\n{output[-4000:]}", pytrace=False)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """clients/js/node_modules, installed from package-lock.json when missing."""
    node, npm = _tool("node"), _tool("npm")
    version = _run([node, "--version"], timeout=30).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 20:
        pytest.fail(f"node {version!r} is too old: {INSTALL_HINT}", pytrace=False)
    modules = CLIENT_DIR / "node_modules"
    if not (modules / "ws" / "package.json").exists():
        result = _run([npm, "ci", "--no-audit", "--no-fund"], timeout=NPM_TIMEOUT)
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return modules


def _summary(output: str) -> dict[str, int]:
    """The counts from the TAP reporter's closing lines (``# pass 12`` ...)."""
    return {
        key: int(value)
        for key, value in re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", output, re.M)
    }


@pytest.fixture
async def crowd_topic(settings: SettingsWrapper) -> AsyncIterator[str]:
    """A topic with more users than one 64 KiB presence frame holds, live for the whole node run."""
    settings.PRESENCE_TTL_SECONDS = 3600  # the entries outlive the run without a refresh
    topic = f"room.js-crowd-{uuid.uuid4().hex[:8]}"
    entries = [PresenceEntry(topic, f"jscrowd{i}", 940_000 + i, f"{i:04d}" + "j" * 100) for i in range(CROWD_SIZE)]
    for entry in entries:
        await presence.join(entry)
    yield topic
    for entry in entries:
        await presence.leave(entry)
    await get_redis().aclose()


async def test_js_client_node_tests_pass_against_the_live_services(
    node_modules: Path,
    ws_server: DaphneServer,
    web_server: DaphneServer,
    capped_ws_server: DaphneServer,
    crowd_topic: str,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    names = [f"js-{suffix}-{name}" for name in ("alice", "bob", "carol")]
    for name in names:
        await sync_to_async(make_user)(name)
    env = dict(
        os.environ,
        WS_URL=f"{ws_server.ws_url}/ws/",
        WEB_URL=web_server.http_url,
        WS_ORIGIN=ws_server.http_url,
        CAPPED_WS_URL=f"{capped_ws_server.ws_url}/ws/",
        REPLAY_MAX_MESSAGES=str(CAPPED_REPLAY_MESSAGES),
        CROWD_TOPIC=crowd_topic,
        CROWD_SIZE=str(CROWD_SIZE),
        TEST_USERS=json.dumps([{"username": name, "password": PASSWORD} for name in names]),
    )
    command = [_tool("node"), "--test", "--test-reporter=tap", "test/"]
    result = await asyncio.to_thread(_run, command, env=env, timeout=NODE_TIMEOUT)
    output = result.stdout + result.stderr
    counts = _summary(result.stdout)
    assert result.returncode == 0, f"node --test failed ({counts}):\n{output[-12000:]}"
    assert counts.get("pass", 0) > 0, f"node --test ran no passing test:\n{output[-4000:]}"
    assert counts.get("fail") == 0, output[-12000:]
    assert counts.get("cancelled") == 0, output[-12000:]
