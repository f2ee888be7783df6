"""``python -m ws_service``: Daphne's server options from the environment."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from ws_service.__main__ import ServerOptions
from ws_service.daphne_close import sendable

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
    assert kwargs["endpoints"] == ["tcp:port=8001:interface=0.0.0.0"]
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
    assert kwargs["endpoints"] == ["tcp:port=9100:interface=0.0.0.0"]
    assert kwargs["ping_interval"] == 5
    assert kwargs["proxy_forwarded_proto_header"] == "X-Forwarded-Proto"
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
