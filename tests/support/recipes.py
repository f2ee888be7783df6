"""The shell recipes of docs/clients.md, as the tests run them.

A recipe is a ``sh`` block right after a ``<!-- recipe: NAME -->`` comment.
The tests run it exactly as written, after replacing only the documented
address (the compose proxy, ``127.0.0.1:8000``) and the demo credentials.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from tests.support.users import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "clients.md"
RECIPE = re.compile(r"<!-- recipe: ([a-z-]+) -->\n```sh\n(.*?)\n```", re.DOTALL)
DOCUMENTED_ADDRESS = "127.0.0.1:8000"
DOCUMENTED_PASSWORD = "'the-password-create_demo_users-printed'"
RUN_TIMEOUT = 60
# Recipes that use the ticket from the login recipe.
NEEDS_TICKET = {"no-csrf-header", "no-origin", "websocat", "wscat", "node", "python"}
FRAMES = (
    '{"type":"subscribe","topic":"room.lobby"}\n'
    '{"type":"publish","topic":"room.lobby","text":"hello from a terminal","ref":"t1"}\n'
)


def recipes() -> dict[str, str]:
    found = dict(RECIPE.findall(PAGE.read_text()))
    assert found, "docs/clients.md has no recipes"
    return found


def script(name: str, port: int, username: str, password: str = PASSWORD) -> str:
    """The recipe ``name`` after the credentials (and the login, for a ticket), for ``127.0.0.1:port``."""
    found = recipes()
    parts = [found["credentials"]]
    if name in NEEDS_TICKET:
        parts.append(found["login"])
    if name != "credentials":
        parts.append(found[name])
    text = "\n".join(parts).replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{port}")
    text = text.replace(DOCUMENTED_PASSWORD, shlex.quote(password))
    return text.replace("DEMO_USER=alice", f"DEMO_USER={shlex.quote(username)}")


def environment() -> dict[str, str]:
    """The caller's environment, with the project's .venv first (``python3`` has ``websockets``)."""
    venv_bin = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
    return dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}")


def run_script(text: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``text`` under ``bash -e`` in ``cwd``, bounded in time."""
    return subprocess.run(
        ["bash", "-ec", text],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
