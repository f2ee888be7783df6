"""``python -m ws_service``: Daphne's command line from the environment."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from ws_service.__main__ import APPLICATION, daphne_args


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_defaults_are_deliberate(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WS_BIND", "WS_PORT", "WS_HANDSHAKE_TIMEOUT", "WS_PROXY_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    args = daphne_args()
    assert _flag(args, "--bind") == "0.0.0.0"
    assert _flag(args, "--port") == "8001"
    # Daphne's CLI default of 5 s drops handshakes during a connect burst.
    assert int(_flag(args, "--websocket_connect_timeout")) >= 30
    assert "--proxy-headers" not in args
    assert args[-1] == APPLICATION


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PORT", "9100")
    monkeypatch.setenv("WS_PING_INTERVAL", "5")
    monkeypatch.setenv("WS_PROXY_HEADERS", "1")
    args = daphne_args()
    assert _flag(args, "--port") == "9100"
    assert _flag(args, "--ping-interval") == "5"
    assert "--proxy-headers" in args


def test_bad_values_fail_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="WS_PORT"):
        daphne_args()
