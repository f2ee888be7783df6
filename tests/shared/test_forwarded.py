"""X-Forwarded-For/-Proto count only from FORWARDED_ALLOW_IPS (shared/forwarded.py).

The wrapper is what Daphne serves in both services (web launcher, ws launcher
with WS_PROXY_HEADERS=1); it is driven here through its ASGI interface with
the scopes Daphne builds, and the ws launcher's options are checked to use it.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from shared.forwarded import trusted_proxies, with_trusted_proxy_headers
from ws_service.launcher.options import ServerOptions

PROXY = "10.203.64.10"
SPOOFED = "203.0.113.9"


class Recorder:
    """An ASGI application that remembers the scope it was called with."""

    def __init__(self) -> None:
        self.scope: dict[str, Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope


async def seen_by_app(trusted: tuple[str, ...], peer: str, kind: str = "http") -> dict[str, Any]:
    """The scope the application sees for a request from ``peer`` carrying forwarded headers."""
    recorder = Recorder()
    scope = {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": (peer, 40000),
        "headers": [(b"x-forwarded-for", SPOOFED.encode()), (b"x-forwarded-proto", b"https")],
    }

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: dict[str, Any]) -> None:
        return None

    await with_trusted_proxy_headers(recorder, trusted)(scope, receive, send)
    assert recorder.scope is not None
    return recorder.scope


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_headers_from_the_proxy_give_the_client_address_and_scheme(kind: str) -> None:
    scope = await seen_by_app((PROXY,), PROXY, kind)
    assert scope["client"][0] == SPOOFED
    assert scope["scheme"] == ("wss" if kind == "websocket" else "https")


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_headers_from_any_other_peer_are_ignored(kind: str) -> None:
    scope = await seen_by_app((PROXY,), "10.203.64.20", kind)
    assert scope["client"] == ("10.203.64.20", 40000)
    assert scope["scheme"] == ("ws" if kind == "websocket" else "http")


async def test_a_trusted_network_covers_its_addresses() -> None:
    assert (await seen_by_app(("10.203.64.0/24",), "10.203.64.77"))["client"][0] == SPOOFED
    assert (await seen_by_app(("10.203.64.0/24",), "10.203.65.77"))["client"][0] == "10.203.65.77"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "is empty"),
        (["proxy_1"], "'proxy_1' is neither"),
        (["-proxy"], "is neither"),
        (["10.0.0.300"], "is neither"),
        (["proxy/24"], "is neither"),
        (["10.0.0.0/33"], "is neither"),
        (["*", "10.0.0.1"], "stands alone"),
    ],
)
def test_bad_entries_fail_naming_the_variable(entries: list[str], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"FORWARDED_ALLOW_IPS.*{message}"):
        trusted_proxies(entries)


def test_good_entries_are_kept() -> None:
    assert trusted_proxies(["10.0.0.1", "fd00::/8", "172.16.0.0/12"]) == ("10.0.0.1", "fd00::/8", "172.16.0.0/12")
    assert trusted_proxies(["*"]) == ("*",)
    assert trusted_proxies(["proxy", "10.0.0.1", "edge-proxy.internal."]) == (
        "proxy",
        "10.0.0.1",
        "edge-proxy.internal.",
    )


def test_ws_launcher_wraps_daphnes_application_and_configures_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PROXY_HEADERS", "1")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", f"{PROXY}, 10.1.0.0/16")
    options = ServerOptions.from_env()
    assert options.forwarded_allow_ips == (PROXY, "10.1.0.0/16")
    # Daphne's own handling (which trusts every peer) stays off ...
    kwargs = options.daphne_kwargs()
    assert kwargs["proxy_forwarded_address_header"] is None
    assert kwargs["proxy_forwarded_proto_header"] is None
    # ... and the application is wrapped with the trusted list.
    recorder = Recorder()
    wrapped = options.application(recorder)
    assert wrapped is not recorder
    assert wrapped.trusts(PROXY)
    assert not wrapped.trusts("10.203.64.20")
    # Uvicorn's own handling stays off too: the same wrapper serves under both servers.
    assert options.uvicorn_kwargs()["proxy_headers"] is False


def test_without_proxy_headers_nothing_is_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WS_PROXY_HEADERS", raising=False)
    options = ServerOptions.from_env()
    recorder = Recorder()
    assert options.application(recorder) is recorder


def test_metrics_bind_defaults_to_the_server_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_BIND", "0.0.0.0")
    monkeypatch.delenv("METRICS_BIND", raising=False)
    assert ServerOptions.from_env().metrics_bind == "0.0.0.0"
    monkeypatch.setenv("METRICS_BIND", "127.0.0.1")
    assert ServerOptions.from_env().metrics_bind == "127.0.0.1"
