"""Host header validation at the WebSocket handshake (``ws_service.host.HostValidator``).

The validator is tested on its own, around a trivial inner application that
accepts every handshake it is given: a refused handshake never reaches it, and
a real Daphne (serving ``application`` below) answers it with HTTP 403.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.test import override_settings

from tests.support.servers import HOST, DaphneServer
from ws_service.asgi_types import Receive, Scope, Send
from ws_service.host import (
    VERDICT_CACHE_SIZE,
    HostValidator,
    cached_host_allowed,
    effective_allowed_hosts,
    host_allowed,
)

ALLOWED_HOSTS = ["example.com", ".example.org", "127.0.0.1", "[::1]"]


class AcceptingApp:
    """Accepts every WebSocket handshake and answers every HTTP request with 200; records scopes."""

    def __init__(self) -> None:
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await receive()  # websocket.disconnect
            return
        await receive()  # http.request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


# Served by the real Daphne in test_daphne_answers_a_foreign_host_with_403.
application = HostValidator(AcceptingApp())


async def _handshake(headers: list[tuple[bytes, bytes]]) -> tuple[bool, AcceptingApp]:
    """Whether a handshake with ``headers`` is accepted, and the inner app it would reach."""
    inner = AcceptingApp()
    communicator = WebsocketCommunicator(HostValidator(inner), "/ws/", headers=headers)
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    else:
        await communicator.wait()
    return connected, inner


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("example.com", True),
        ("EXAMPLE.COM:443", True),
        ("example.com.", True),  # trailing dot, as Django accepts it
        ("example.org", True),
        ("sub.example.org:8443", True),
        ("127.0.0.1:8001", True),
        ("[::1]:8001", True),
        ("evil.example", False),
        ("example.com.evil.example", False),
        ("evilexample.org", False),
        ("notexample.com", False),
        ("127.0.0.2", False),
        ("", False),
        ("example.com:notaport", False),
        ("example.com@evil.example", False),
        ("exa mple.com", False),
        (None, False),
    ],
)
def test_host_rules(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, ALLOWED_HOSTS) is allowed


def test_debug_with_no_allowed_hosts_allows_only_localhost_variants() -> None:
    assert effective_allowed_hosts([], debug=False) == []
    assert effective_allowed_hosts(["example.com"], debug=True) == ["example.com"]
    debug_hosts = effective_allowed_hosts([], debug=True)
    assert host_allowed("localhost:8001", debug_hosts)
    assert host_allowed("app.localhost", debug_hosts)
    assert not host_allowed("evil.example", debug_hosts)


@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS)
@pytest.mark.parametrize("host", ["example.com", "sub.example.org:8443", "[::1]:8001"])
async def test_allowed_host_reaches_the_inner_app(host: str) -> None:
    connected, inner = await _handshake([(b"host", host.encode()), (b"origin", b"https://example.com")])
    assert connected
    assert len(inner.scopes) == 1


@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS)
@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"evil.example")],
        [(b"host", b"example.com.evil.example:443")],
        [(b"host", b"")],
        [(b"host", b"example.com\xff")],
        [],  # no Host header at all
        [(b"host", b"example.com"), (b"host", b"evil.example")],  # ambiguous: two Host headers
    ],
    ids=["foreign", "suffix-trick", "empty", "garbage", "missing", "duplicate"],
)
async def test_refused_host_never_reaches_the_inner_app(
    headers: list[tuple[bytes, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ws.host"):
        connected, inner = await _handshake([*headers, (b"origin", b"https://example.com")])
    assert connected is False
    assert inner.scopes == []
    assert "refused WebSocket handshake" in caplog.text


@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS)
async def test_refusal_is_a_close_before_accept() -> None:
    """A close before accept is what Daphne answers with HTTP 403 (ASGI spec); its reason is the 403's text."""
    communicator = WebsocketCommunicator(HostValidator(AcceptingApp()), "/ws/", headers=[(b"host", b"evil.example")])
    await communicator.send_input({"type": "websocket.connect"})
    assert await communicator.receive_output(1) == {
        "type": "websocket.close",
        "reason": "WebSocket refused: Host is not in DJANGO_ALLOWED_HOSTS",
    }
    await communicator.wait()


@override_settings(ALLOWED_HOSTS=[], DEBUG=True)
async def test_debug_with_no_allowed_hosts_accepts_localhost_only() -> None:
    assert (await _handshake([(b"host", b"localhost:8001")]))[0] is True
    assert (await _handshake([(b"host", b"evil.example")]))[0] is False


@override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS)
async def test_http_scopes_pass_through() -> None:
    """Health probes answer whatever Host an orchestrator sends."""
    inner = AcceptingApp()
    communicator = HttpCommunicator(HostValidator(inner), "GET", "/healthz", headers=[(b"host", b"10.0.0.7:8001")])
    response = await communicator.get_response(timeout=1)
    assert response["status"] == 200
    assert len(inner.scopes) == 1


@pytest.fixture(scope="module")
def host_checked_daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    """Daphne serving ``application`` (HostValidator around AcceptingApp), ALLOWED_HOSTS=example.com,127.0.0.1."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="shared.settings", DJANGO_ALLOWED_HOSTS="example.com,127.0.0.1")
    command = [sys.executable, "-m", "daphne", "-b", HOST, "-p", "{port}", f"{__name__}:application"]
    server = DaphneServer("host-check", command, env, tmp_path_factory.mktemp("host-check") / "daphne.log")
    server.start()
    yield server
    server.stop()


def _raw_handshake_status(port: int, host: str) -> str:
    """The status line Daphne answers a WebSocket upgrade request for ``host`` with."""
    request = (
        f"GET /ws/ HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request.encode("latin-1"))
        response = b""
        while b"\r\n" not in response:
            chunk = sock.recv(1024)
            if not chunk:
                break
            response += chunk
    return response.split(b"\r\n", 1)[0].decode("latin-1")


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("example.com", "101"),
        (f"{HOST}:8001", "101"),
        ("evil.example", "403"),
        ("example.com.evil.example:443", "403"),
    ],
)
def test_daphne_answers_a_foreign_host_with_403(host_checked_daphne: DaphneServer, host: str, status: str) -> None:
    status_line = _raw_handshake_status(host_checked_daphne.port, host)
    assert status_line.split(" ")[1] == status, status_line


def test_refusals_are_logged_by_the_server(host_checked_daphne: DaphneServer) -> None:
    _raw_handshake_status(host_checked_daphne.port, "rebinding.attacker.example")
    log = Path(host_checked_daphne.log_path).read_text()
    assert "refused WebSocket handshake: host ['rebinding.attacker.example']" in log


async def test_a_changed_allowed_hosts_is_never_answered_from_a_remembered_verdict() -> None:
    """Verdicts are remembered per process, keyed by the settings too: a new ALLOWED_HOSTS decides afresh."""
    headers = [(b"host", b"moved.example"), (b"origin", b"https://moved.example")]
    with override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS):
        assert (await _handshake(headers))[0] is False
    with override_settings(ALLOWED_HOSTS=["moved.example"]):
        assert (await _handshake(headers))[0] is True
    with override_settings(ALLOWED_HOSTS=ALLOWED_HOSTS):
        assert (await _handshake(headers))[0] is False


def test_remembered_host_verdicts_are_bounded() -> None:
    """A client sending a new Host on every handshake cannot grow the process's memory."""
    allowed = ("*",)
    for index in range(VERDICT_CACHE_SIZE + 100):
        assert cached_host_allowed(f"h{index}.example", allowed, False)
    info = cached_host_allowed.cache_info()
    assert info.maxsize == VERDICT_CACHE_SIZE
    assert info.currsize <= VERDICT_CACHE_SIZE
