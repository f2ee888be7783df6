"""The recipes of docs/clients.md, run as written against live services.

Each ``<!-- recipe: NAME -->`` shell block is taken from the page itself, so
the page cannot drift from what is tested. Only the documented address
(``127.0.0.1:8000``, the compose proxy) and the demo credentials are
replaced: the address by a router that, like the proxy, sends ``/ws/`` to a
real ws service and everything else to a real web service
(tests/support/front.py), both on real PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from shared.models import Message
from tests.support.front import Front, front
from tests.support.recipes import DOCUMENTED_PASSWORD, FRAMES, ROOT, environment, recipes, run_script, script
from tests.support.servers import DaphneServer
from tests.support.users import make_user

db = pytest.mark.django_db(transaction=True)


def test_every_recipe_is_run_by_a_test() -> None:
    """A new recipe needs a test here; this module's tests name the recipes they run."""
    source = Path(__file__).read_text()
    untested = [name for name in recipes() if f'"{name}"' not in source.split("def test_every_recipe", 1)[1]]
    assert not untested, f"add a test for these docs/clients.md recipes: {untested}"


@pytest.fixture(scope="module")
def recipe_front(service_env: dict[str, str], django_db_setup: None, logs_dir: Path) -> Iterator[Front]:
    """web and ws (Daphne, as in the images) behind one address, as compose serves them."""
    web = DaphneServer.web(service_env, logs_dir / "recipes-web.log")
    ws = DaphneServer.ws(service_env, logs_dir / "recipes-ws.log")
    web.start()
    ws.start()
    try:
        with front(web.port, ws.port) as router:
            yield router
    finally:
        web.stop()
        ws.stop()


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the documented ``npm install`` done (wscat and ws)."""
    directory = tmp_path_factory.mktemp("recipes-node")
    result = subprocess.run(
        ["bash", "-ec", recipes()["npm-install"]],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"npm install failed: {result.stderr[-2000:]}"
    return directory


@pytest.fixture
def demo_user() -> User:
    return make_user(f"demo-{uuid.uuid4().hex[:10]}")


def run(name: str, router: Front, user: User, cwd: Path) -> str:
    result = run_script(script(name, router.port, user.username), cwd)
    assert result.returncode == 0, f"{name} failed ({result.returncode}): {result.stdout}\n{result.stderr}"
    return result.stdout


def run_interactive(name: str, router: Front, user: User, cwd: Path, *, until: str, within: float = 20) -> str:
    """Start the recipe, type ``FRAMES`` once it is connected (stdin kept open), read until ``until``."""
    process = subprocess.Popen(
        ["bash", "-ec", script(name, router.port, user.username)],
        cwd=cwd,
        env=environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None
    assert stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while (line := lines.get(timeout=within)) is not None:
            seen.append(line)
            if '"welcome"' in line:
                stdin.write(FRAMES)
                stdin.flush()
            if until in line:
                return "".join(seen)
    except queue.Empty:
        pass
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
        reader.join(timeout=10)
        stdin.close()
        stdout.close()
    pytest.fail(f"{name}: no {until!r} within {within} s; output:\n{''.join(seen)}")


@db
def test_login_gets_a_ticket_after_the_rotated_csrf_token(recipe_front: Front, demo_user: User, tmp_path: Path) -> None:
    output = run("login", recipe_front, demo_user, tmp_path)
    assert "login: 302" in output
    assert re.search(r"^ticket: [A-Za-z0-9_-]{43}$", output, flags=re.MULTILINE), output


@db
def test_a_ticket_request_without_the_csrf_header_is_403(recipe_front: Front, demo_user: User, tmp_path: Path) -> None:
    output = run("no-csrf-header", recipe_front, demo_user, tmp_path)
    assert "without X-CSRFToken: 403" in output


@db
def test_a_handshake_without_origin_is_told_which_origin_to_send(
    recipe_front: Front, demo_user: User, tmp_path: Path
) -> None:
    output = run("no-origin", recipe_front, demo_user, tmp_path)
    assert output.splitlines()[2].startswith("HTTP/1.1 403"), output
    assert f"send Origin: http://127.0.0.1:{recipe_front.port} (or one in" in output


@db
def test_python_websockets_recipe(recipe_front: Front, demo_user: User, tmp_path: Path) -> None:
    output = run("python", recipe_front, demo_user, tmp_path)
    assert '"type": "welcome"' in output
    assert '"type": "ack"' in output
    assert Message.objects.filter(text="hello from python", author=demo_user).exists()


@db
def test_node_ws_recipe(recipe_front: Front, demo_user: User, node_dir: Path) -> None:
    output = run("node", recipe_front, demo_user, node_dir)
    assert '"type":"welcome"' in output
    assert '"type":"ack"' in output
    assert Message.objects.filter(text="hello from node", author=demo_user).exists()


@db
def test_wscat_recipe(recipe_front: Front, demo_user: User, node_dir: Path) -> None:
    output = run_interactive("wscat", recipe_front, demo_user, node_dir, until='"type":"ack"')
    assert '"type":"welcome"' in output
    assert Message.objects.filter(text="hello from a terminal", author=demo_user).exists()


@db
def test_websocat_recipe(recipe_front: Front, demo_user: User, tmp_path: Path) -> None:
    output = run_interactive("websocat", recipe_front, demo_user, tmp_path, until='"type":"ack"')
    assert '"type":"welcome"' in output


@db
def test_wsclient_recipes_from_the_repository_root(recipe_front: Front, demo_user: User) -> None:
    run("wsclient-publish", recipe_front, demo_user, ROOT)
    assert Message.objects.filter(text="hello from wsclient", author=demo_user).exists()
    output = run("wsclient-listen", recipe_front, demo_user, ROOT)
    assert '"type": "message"' in output or '"type":"message"' in output
    assert "room.lobby" in output


@db
def test_credentials_recipe_is_the_demo_user_and_its_password(recipe_front: Front, demo_user: User) -> None:
    """The page's credentials are those of create_demo_users (alice); the test swaps in its own."""
    found = recipes()["credentials"]
    assert "DEMO_USER=alice" in found
    assert DOCUMENTED_PASSWORD in found
