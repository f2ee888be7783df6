"""ws_service.asgi sets Django up before importing anything that needs it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ASGI_FILE = Path(__file__).resolve().parents[2] / "ws_service" / "asgi.py"
ALLOWED_BEFORE_SETUP = {"os", "django"}


def test_imports_in_a_fresh_interpreter() -> None:
    assert _fresh_interpreter("import ws_service.asgi as m; print(type(m.application).__name__)") == "ScopeTypeRouter"


def test_the_uvicorn_worker_does_not_import_daphne_or_twisted() -> None:
    """A restarting Uvicorn process listens sooner without Daphne, Twisted and autobahn (a third of its imports).

    Daphne's server module installs Twisted's reactor when imported, and it was
    imported through ``INSTALLED_APPS`` (the ``daphne`` app only adds its
    ``runserver``). The Daphne launchers import it themselves, first.
    """
    code = (
        "import sys; from ws_service.launcher import uvicorn_backend; import ws_service.asgi; "
        "print(sorted(m for m in ('daphne', 'twisted', 'autobahn') if m in sys.modules))"
    )
    assert _fresh_interpreter(code) == "[]"


def test_the_ws_process_does_not_build_the_web_services_http_stack() -> None:
    """Start-up sets Django up and no more: the web middleware (WhiteNoise scans the static files) is never built."""
    code = (
        "import sys; import ws_service.asgi; "
        "print(sorted(m for m in ('whitenoise.middleware', 'web_service.middleware', 'web_service.health') "
        "if m in sys.modules))"
    )
    assert _fresh_interpreter(code) == "[]"


def _fresh_interpreter(code: str) -> str:
    """What ``code`` prints in a new interpreter with only what start-up requires.

    The settings module, and the secret key that production settings insist on
    (see test_settings). No database or Redis.
    """
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "shared.settings",
        "DJANGO_SECRET_KEY": "import-order-test",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ASGI_FILE.parents[1],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _imported_modules(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        return {node.module or ""}
    return set()


def _calls_django_setup(node: ast.stmt) -> bool:
    return any(
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and (call.func.value.id, call.func.attr) == ("django", "setup")
        for call in ast.walk(node)
    )


def test_django_setup_runs_before_any_project_import() -> None:
    body = ast.parse(ASGI_FILE.read_text()).body
    setup_index = next(i for i, node in enumerate(body) if _calls_django_setup(node))
    before = set().union(*(_imported_modules(node) for node in body[:setup_index]))
    after = set().union(*(_imported_modules(node) for node in body[setup_index:]))
    assert before <= ALLOWED_BEFORE_SETUP, f"imported before django.setup(): {before - ALLOWED_BEFORE_SETUP}"
    assert any(module.startswith("ws_service") for module in after)
