"""The one settings module: environment parsing and start-up failures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from shared.channel_layer import BACKEND, RedisPoolOptions, channel_layers_config
from shared.env import env_bool, env_float, env_int, env_list


def _import_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "shared.settings"}
    return subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=False, timeout=60
    )


def test_start_up_without_secret_key_fails_naming_the_variable() -> None:
    result = _import_settings({"DJANGO_DEBUG": "0"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_secret_key_defaults_only_in_debug() -> None:
    result = _import_settings({"DJANGO_DEBUG": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_ticket_lifetime_is_capped_at_60_seconds() -> None:
    result = _import_settings({"DJANGO_DEBUG": "1", "WS_TICKET_TTL_SECONDS": "61"})
    assert result.returncode != 0
    assert "WS_TICKET_TTL_SECONDS" in result.stderr


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False)])
def test_env_bool(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG", not expected) is expected


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_FLAG", "maybe")
    monkeypatch.setenv("X_INT", "ten")
    monkeypatch.setenv("X_FLOAT", "9")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG", False)
    with pytest.raises(ImproperlyConfigured, match="X_INT"):
        env_int("X_INT", 1)
    with pytest.raises(ImproperlyConfigured, match="X_FLOAT"):
        env_float("X_FLOAT", 1.0, maximum=2.0)


def test_env_list_drops_blanks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_LIST", " a.example , ,b.example,")
    assert env_list("X_LIST", []) == ["a.example", "b.example"]
    assert env_list("X_UNSET_LIST", ["d"]) == ["d"]


def test_channel_layer_uses_bounded_blocking_pool_and_long_socket_timeout() -> None:
    config = channel_layers_config(
        "redis://h:1/0", prefix="p", capacity=10, expiry=60, pool=RedisPoolOptions(max_connections=7)
    )["default"]
    host = config["CONFIG"]["hosts"][0]
    assert config["BACKEND"] == BACKEND
    assert host["max_connections"] == 7
    assert host["socket_timeout"] > 5  # channels-redis blocks 5 s in BZPOPMIN
    assert host["socket_keepalive"] is True
    assert host["retry"].get_retries() > 0  # dead pooled connections reconnect after a Redis restart


def test_socket_timeout_at_or_below_the_blocking_read_is_rejected() -> None:
    with pytest.raises(ValueError, match="must exceed"):
        channel_layers_config(
            "redis://h:1/0", prefix="p", capacity=10, expiry=60, pool=RedisPoolOptions(socket_timeout=5)
        )


# ---------------------------------------------------------------------------
# DJANGO_ENV: the published development secrets only in development mode
# ---------------------------------------------------------------------------

COMPOSE_DEV_KEY = "insecure-dev-key-change-me"
COMPOSE_DEV_DATABASE_URL = "postgres://app:insecure-dev-db-password@db:5432/app"
REAL_KEY = "a-real-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def _import_mode(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Load the settings with ``env`` and print DJANGO_ENV (nothing is connected to)."""
    code = "import django; django.setup(); from django.conf import settings; print(settings.DJANGO_ENV)"
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "shared.settings"}
    return subprocess.run(
        [sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=False, timeout=60
    )


@pytest.mark.parametrize("mode", [{}, {"DJANGO_ENV": "production"}], ids=["default", "explicit"])
def test_production_refuses_the_compose_development_secret_key(mode: dict[str, str]) -> None:
    """The compose defaults with DJANGO_DEBUG=0 used to start: the fail-closed check was defeated."""
    result = _import_mode({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": COMPOSE_DEV_KEY, **mode})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY is a published development key" in result.stderr


@pytest.mark.parametrize(
    "key", ["django-insecure-development-only-never-use-in-production", "django-insecure-abc123generated"]
)
def test_production_refuses_django_insecure_keys(key: str) -> None:
    result = _import_mode({"DJANGO_ENV": "production", "DJANGO_SECRET_KEY": key})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_the_development_database_password() -> None:
    result = _import_mode({"DJANGO_SECRET_KEY": REAL_KEY, "DATABASE_URL": COMPOSE_DEV_DATABASE_URL})
    assert result.returncode != 0
    assert "DATABASE_URL holds the published development database password" in result.stderr
    assert "POSTGRES_PASSWORD" in result.stderr


def test_production_accepts_real_secrets() -> None:
    result = _import_mode({"DJANGO_SECRET_KEY": REAL_KEY, "DATABASE_URL": "postgres://app:s3cret-Pw@db:5432/app"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "production"


def test_development_mode_accepts_the_compose_defaults() -> None:
    """What `docker compose up` with no .env runs with."""
    result = _import_mode(
        {
            "DJANGO_ENV": "development",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": COMPOSE_DEV_KEY,
            "DATABASE_URL": COMPOSE_DEV_DATABASE_URL,
        }
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "development"


def test_debug_implies_development_but_not_in_explicit_production() -> None:
    implied = _import_mode({"DJANGO_DEBUG": "1"})
    assert implied.returncode == 0, implied.stderr
    assert implied.stdout.strip() == "development"
    refused = _import_mode({"DJANGO_DEBUG": "1", "DJANGO_ENV": "production"})
    assert refused.returncode != 0
    assert "DJANGO_DEBUG=1 is not allowed with DJANGO_ENV=production" in refused.stderr


def test_unknown_mode_names_the_variable() -> None:
    result = _import_mode({"DJANGO_ENV": "staging", "DJANGO_SECRET_KEY": REAL_KEY})
    assert result.returncode != 0
    assert "DJANGO_ENV='staging' is not a mode" in result.stderr
