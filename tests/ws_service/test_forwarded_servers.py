"""Forwarded headers on the real servers: honoured from FORWARDED_ALLOW_IPS peers, ignored from others.

The ws launcher's own code paths (``ServerOptions.daphne_kwargs`` and
``application``, ``ServerOptions.uvicorn_kwargs``) serve a small ASGI
application that reports the client address and scheme it sees, under Daphne
and Uvicorn, in a subprocess on 127.0.0.1. Requests carry
``X-Forwarded-For``/``-Proto``; the peer is always 127.0.0.1, trusted or not
depending on ``FORWARDED_ALLOW_IPS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SPOOFED = "203.0.113.9"
FORWARDED = {"X-Forwarded-For": SPOOFED, "X-Forwarded-Proto": "https"}
START_TIMEOUT = 20.0

SERVE = """
import json
from ws_service.launcher.options import ServerOptions

async def report(scope, receive, send):
    # "scheme" is optional in ASGI (Daphne leaves it out of WebSocket scopes): its default.
    default = "ws" if scope["type"] == "websocket" else "http"
    seen = json.dumps({"client": scope["client"][0], "scheme": scope.get("scheme", default)})
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": seen.encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": seen})
        await send({"type": "websocket.close", "code": 1000})

options = ServerOptions.from_env()
if options.server == "daphne":
    from daphne.server import Server
    kwargs = options.daphne_kwargs() | {"signal_handlers": True}
    Server(application=options.application(report), **kwargs).run()
else:
    import uvicorn
    uvicorn.Server(uvicorn.Config(options.application(report), **options.uvicorn_kwargs())).run()
"""


def serve(server: str, allow: str) -> Iterator[str]:
    """The reporting application under ``server`` with FORWARDED_ALLOW_IPS=``allow``; yields its base URL."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "WS_SERVER": server,
        "WS_BIND": "127.0.0.1",
        "WS_PORT": str(port),
        "WS_PROXY_HEADERS": "1",
        "FORWARDED_ALLOW_IPS": allow,
    }
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                errors.seek(0)
                pytest.fail(f"{server} exited: {errors.read().decode()[-2000:]}")
            try:
                httpx.get(url, timeout=1.0, trust_env=False)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{server} did not start within {START_TIMEOUT:g}s"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        errors.close()


@pytest.fixture(params=["daphne", "uvicorn"])
def server_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def trusted_server(server_name: str) -> Iterator[str]:
    """127.0.0.1 (every request's peer here) is the trusted proxy."""
    yield from serve(server_name, "127.0.0.1")


@pytest.fixture
def untrusted_server(server_name: str) -> Iterator[str]:
    """Only 10.203.64.10 is trusted: 127.0.0.1 is just another peer."""
    yield from serve(server_name, "10.203.64.10")


async def seen(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """What the application saw over HTTP and over a WebSocket, both with forwarded headers."""
    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as client:
        http = (await client.get(url, headers=FORWARDED)).json()
    async with connect(url.replace("http", "ws", 1), additional_headers=FORWARDED, proxy=None) as socket:
        websocket = json.loads(await socket.recv())
    return http, websocket


async def test_forwarded_headers_from_the_trusted_proxy_are_applied(trusted_server: str) -> None:
    http, websocket = await seen(trusted_server)
    assert http == {"client": SPOOFED, "scheme": "https"}
    assert websocket == {"client": SPOOFED, "scheme": "wss"}


async def test_forwarded_headers_from_any_other_peer_are_ignored(untrusted_server: str) -> None:
    http, websocket = await seen(untrusted_server)
    assert http == {"client": "127.0.0.1", "scheme": "http"}
    assert websocket == {"client": "127.0.0.1", "scheme": "ws"}


@pytest.fixture
def named_server(server_name: str) -> Iterator[str]:
    """The trusted proxy given by name: ``localhost`` resolves to 127.0.0.1 (compose uses ``proxy``)."""
    yield from serve(server_name, "localhost")


async def test_a_proxy_named_in_forwarded_allow_ips_is_trusted_at_its_resolved_address(named_server: str) -> None:
    http, websocket = await seen(named_server)
    assert http == {"client": SPOOFED, "scheme": "https"}
    assert websocket == {"client": SPOOFED, "scheme": "wss"}
