"""``python -m ws_service``: the server options (Daphne or Uvicorn) from the environment."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from ws_service.daphne_close import sendable
from ws_service.launcher.options import ServerOptions

WS_VARIABLES = (
    "WS_BIND",
    "WS_PORT",
    "WS_HANDSHAKE_TIMEOUT",
    "WS_PROXY_HEADERS",
    "WS_MAX_MESSAGE_BYTES",
    "WS_DRAIN_TIMEOUT",
    "WS_PING_INTERVAL",
)


def test_defaults_are_deliberate(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in WS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    options = ServerOptions.from_env()
    kwargs = options.daphne_kwargs()
    assert kwargs["endpoints"] == ["tcp:port=8001:interface=0.0.0.0:backlog=2048"]
    # Daphne's CLI default of 5 s drops handshakes during a connect burst.
    assert kwargs["websocket_connect_timeout"] >= 30
    assert kwargs["websocket_max_message_size"] == 64 * 1024
    assert kwargs["signal_handlers"] is False
    assert kwargs["proxy_forwarded_address_header"] is None
    assert options.drain_timeout == 10.0


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PORT", "9100")
    monkeypatch.setenv("WS_PING_INTERVAL", "5")
    monkeypatch.setenv("WS_PROXY_HEADERS", "1")
    monkeypatch.setenv("WS_DRAIN_TIMEOUT", "3.5")
    kwargs = ServerOptions.from_env().daphne_kwargs()
    assert kwargs["endpoints"] == ["tcp:port=9100:interface=0.0.0.0:backlog=2048"]
    assert kwargs["ping_interval"] == 5
    # Daphne never applies proxy headers itself: ServerOptions.application() does, from trusted peers only.
    assert kwargs["proxy_forwarded_proto_header"] is None
    assert ServerOptions.from_env().drain_timeout == 3.5


def test_bad_values_fail_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="WS_PORT"):
        ServerOptions.from_env()


@pytest.mark.parametrize(
    ("code", "ok"), [(1000, True), (1008, True), (1012, True), (4401, True), (1005, False), (999, False)]
)
def test_close_codes_the_patched_daphne_may_send(code: int, ok: bool) -> None:
    assert sendable(code) is ok


def test_uvicorn_gets_the_same_limits_and_no_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_SERVER", "uvicorn")
    monkeypatch.setenv("WS_MAX_MESSAGE_BYTES", "2048")
    monkeypatch.setenv("WS_PING_INTERVAL", "7")
    options = ServerOptions.from_env()
    assert options.server == "uvicorn"
    kwargs = options.uvicorn_kwargs()
    assert kwargs["ws"] == "websockets-sansio"
    assert kwargs["ws_max_size"] == 2048
    assert kwargs["ws_ping_interval"] == 7.0
    assert kwargs["lifespan"] == "off"
    assert kwargs["access_log"] is False  # Uvicorn's access lines carry the query string (tickets)
    assert kwargs["log_config"] is None
    assert options.uvicorn_kwargs(listen_fd=5)["fd"] == 5


def test_an_inherited_socket_becomes_daphnes_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WS_BIND", raising=False)
    assert ServerOptions.from_env().daphne_kwargs(listen_fd=7)["endpoints"] == ["fd:fileno=7"]


@pytest.mark.parametrize(("name", "value"), [("WS_SERVER", "gunicorn"), ("WS_WORKERS", "0")])
def test_unknown_server_or_no_workers_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        ServerOptions.from_env()
