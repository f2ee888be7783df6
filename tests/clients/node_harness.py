"""Running the JS client's Node tests (clients/js/test/) against live services.

``node --test`` runs in clients/js with the live endpoints in its
environment (see clients/js/test-support/live.js). ``npm ci`` installs the
one dev dependency (``ws``: Node 20 has no global WebSocket) when
node_modules is missing. A Node test file ``<name>.test.js`` that has a
harness of its own, ``tests/clients/test_js_client_<name>.py``, runs only
from there (an optional feature's tests go with the feature).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from tests.clients.conftest import CAPPED_REPLAY_MESSAGES
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
NPM_TIMEOUT = 300
NODE_TIMEOUT = 240
INSTALL_HINT = "install Node.js >= 20 with npm (Debian: apt-get install nodejs npm)"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: the JS client tests need it; {INSTALL_HINT}", pytrace=False)
    return path


def run(command: list[str], *, env: dict[str, str] | None = None, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, cwd=CLIENT_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
        pytest.fail(f"{' '.join(command)} did not finish within {timeout}s:\n{output[-4000:]}", pytrace=False)


def node_modules() -> Path:
    """clients/js/node_modules, installed from package-lock.json when missing."""
    node, npm = tool("node"), tool("npm")
    version = run([node, "--version"], timeout=30).stdout.strip()
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 20:
        pytest.fail(f"node {version!r} is too old: {INSTALL_HINT}", pytrace=False)
    modules = CLIENT_DIR / "node_modules"
    if not (modules / "ws" / "package.json").exists():
        result = run([npm, "ci", "--no-audit", "--no-fund"], timeout=NPM_TIMEOUT)
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return modules


def summary(output: str) -> dict[str, int]:
    """The counts from the TAP reporter's closing lines (``# pass 12`` ...)."""
    return {
        key: int(value)
        for key, value in re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", output, re.M)
    }


def node_test_files(own: str | None = None) -> list[str]:
    """``test/<own>.test.js``, or (``own`` None) every Node test file without a harness of its own."""
    if own is not None:
        return [f"test/{own}.test.js"]
    harnesses = Path(__file__).resolve().parent
    return [
        f"test/{path.name}"
        for path in sorted((CLIENT_DIR / "test").glob("*.test.js"))
        if not (harnesses / f"test_js_client_{path.name.removesuffix('.test.js')}.py").exists()
    ]


def run_node_tests(files: list[str], env: dict[str, str]) -> None:
    """Run ``node --test`` on ``files``; fail unless every test passes."""
    assert files, "no Node test file to run"
    command = [tool("node"), "--test", "--test-reporter=tap", *files]
    result = run(command, env=env, timeout=NODE_TIMEOUT)
    output = result.stdout + result.stderr
    counts = summary(result.stdout)
    assert result.returncode == 0, f"node --test failed ({counts}):\n{output[-12000:]}"
    assert counts.get("pass", 0) > 0, f"node --test ran no passing test:\n{output[-4000:]}"
    assert counts.get("fail") == 0, output[-12000:]
    assert counts.get("cancelled") == 0, output[-12000:]


async def live_env(
    ws_server: DaphneServer, web_server: DaphneServer, capped_ws_server: DaphneServer, **extra: str
) -> dict[str, str]:
    """The Node tests' environment: the live endpoints and three fresh users (``TEST_USERS``), plus ``extra``."""
    suffix = uuid.uuid4().hex[:8]
    names = [f"js-{suffix}-{name}" for name in ("alice", "bob", "carol")]
    for name in names:
        await sync_to_async(make_user)(name)
    return dict(
        os.environ,
        WS_URL=f"{ws_server.ws_url}/ws/",
        WEB_URL=web_server.http_url,
        WS_ORIGIN=ws_server.http_url,
        CAPPED_WS_URL=f"{capped_ws_server.ws_url}/ws/",
        REPLAY_MAX_MESSAGES=str(CAPPED_REPLAY_MESSAGES),
        TEST_USERS=json.dumps([{"username": name, "password": PASSWORD} for name in names]),
        **extra,
    )
