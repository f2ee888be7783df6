"""``python -m django check --deploy`` is clean for production settings.

The check runs in a subprocess with an environment built from scratch (none of
pytest-env's test values leak in), holding exactly the production values the
production checklist (docs/deployment.md) lists. ``check --deploy`` never connects to the
database or Redis, so their URLs point at hosts that do not exist.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What a developer's shell may need to start Python; nothing Django reads.
PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def production_env(**overrides: str) -> dict[str, str]:
    """The production checklist (docs/deployment.md) as an environment, plus ``overrides``."""
    env = {name: os.environ[name] for name in PASSTHROUGH if name in os.environ}
    env.update(
        DJANGO_SETTINGS_MODULE="shared.settings",
        PYTHONPATH=str(ROOT),
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(48),  # 64 characters, as random as Django wants
        DJANGO_ALLOWED_HOSTS="example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://example.com",
        DJANGO_SECURE_COOKIES="1",
        DJANGO_TRUST_X_FORWARDED_PROTO="1",
        DJANGO_SECURE_SSL_REDIRECT="1",
        DJANGO_SECURE_HSTS_SECONDS="31536000",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
        DJANGO_SECURE_HSTS_PRELOAD="1",
        DATABASE_URL="postgres://app:not-used@db.invalid:5432/app",
        REDIS_URL="redis://redis.invalid:6379/0",
    )
    env.update(overrides)
    return env


def deploy_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m django check --deploy --fail-level WARNING`` under ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "django", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_check_deploy_without_warnings() -> None:
    result = deploy_check(production_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in result.stdout, output
    assert "WARNING" not in output
    assert "security.W" not in output


@pytest.mark.parametrize(
    ("overrides", "warning"),
    [
        ({"DJANGO_SECURE_COOKIES": "0"}, "security.W012"),
        ({"DJANGO_SECURE_SSL_REDIRECT": "0"}, "security.W008"),
        ({"DJANGO_SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "0"}, "security.W005"),
        ({"DJANGO_SECURE_HSTS_PRELOAD": "0"}, "security.W021"),
        ({"DJANGO_SECRET_KEY": "short-and-guessable"}, "security.W009"),
    ],
)
def test_each_production_value_is_needed(overrides: dict[str, str], warning: str) -> None:
    """The clean result above is not vacuous: dropping any one value brings its warning back."""
    result = deploy_check(production_env(**overrides))
    assert result.returncode != 0
    assert warning in result.stderr, result.stdout + result.stderr


def test_debug_off_without_a_secret_key_refuses_to_start() -> None:
    env = production_env()
    del env["DJANGO_SECRET_KEY"]
    result = deploy_check(env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr
