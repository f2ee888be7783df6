"""A refused handshake says why: the 403's text body names what to send, on Daphne and Uvicorn."""

from __future__ import annotations

import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.live import open_ws
from tests.support.servers import DaphneServer


async def _refusal(uri: str, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as refused:
        await connect(uri, open_timeout=10, **kwargs)  # type: ignore[arg-type]
    response = refused.value.response
    return response.status_code, response.body.decode() if response.body else ""


async def test_a_missing_origin_is_told_the_origin_to_send(ws_server: DaphneServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(ws_server.ws_url, origin=None)
    response = refused.value.response
    assert response.status_code == 403
    body = (response.body or b"").decode()
    assert "no Origin header" in body
    assert f"send Origin: http://127.0.0.1:{ws_server.port}" in body


async def test_a_foreign_origin_is_named_in_the_refusal(ws_server: DaphneServer) -> None:
    status, body = await _refusal(f"{ws_server.ws_url}/ws/", origin="https://evil.example")
    assert status == 403
    assert "Origin 'https://evil.example' is not allowed" in body
    assert "DJANGO_CSRF_TRUSTED_ORIGINS" in body


async def test_another_path_is_told_to_use_ws(ws_server: DaphneServer) -> None:
    status, body = await _refusal(f"{ws_server.ws_url}/other/", origin=f"http://127.0.0.1:{ws_server.port}")
    assert (status, body) == (403, "WebSocket refused: only /ws/ accepts WebSockets\n")


async def test_a_host_not_allowed_is_told_so(ws_server: DaphneServer) -> None:
    """The URL's host is what the client sends as ``Host``; the socket still goes to 127.0.0.1."""
    with socket.create_connection(("127.0.0.1", ws_server.port), timeout=10) as sock:
        status, body = await _refusal(
            f"ws://evil.example:{ws_server.port}/ws/", origin="http://evil.example", sock=sock
        )
    assert status == 403
    assert "DJANGO_ALLOWED_HOSTS" in body
