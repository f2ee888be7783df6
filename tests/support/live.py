"""Real clients for the services under Daphne: HTTP login, tickets, WebSockets."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.protocol_schema import validate_frame

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
# open_ws's default: the page origin of the ws URL itself (ws://h:p -> http://h:p), which the
# ws service trusts as its own origin.
SAME_ORIGIN = "same-origin"


def page_origin(ws_url: str) -> str:
    """The http(s) origin of a ws(s) URL: what a page served by the same server sends."""
    parts = urlsplit(ws_url)
    return f"{ {'ws': 'http', 'wss': 'https'}[parts.scheme] }://{parts.netloc}"


async def login(web_url: str, username: str, password: str) -> httpx.AsyncClient:
    """An HTTP client logged in through the real login form (CSRF and all)."""
    client = httpx.AsyncClient(base_url=web_url, timeout=10)
    page = await client.get("/accounts/login/")
    page.raise_for_status()
    match = CSRF_INPUT.search(page.text)
    assert match, "login form has no CSRF token"
    response = await client.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)},
        headers={"Referer": f"{web_url}/accounts/login/", "Origin": web_url},
    )
    assert response.status_code == 302, f"login failed: {response.status_code} {response.text[:300]}"
    assert "sessionid" in client.cookies
    return client


async def fetch_ticket(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post(
        "/api/ws-ticket",
        headers={"X-CSRFToken": client.cookies["csrftoken"], "Origin": str(client.base_url).rstrip("/")},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def session_cookie(client: httpx.AsyncClient) -> str:
    return f"sessionid={client.cookies['sessionid']}"


async def open_ws(
    ws_url: str,
    *,
    cookie: str | None = None,
    ticket: str | None = None,
    origin: str | None = SAME_ORIGIN,
    open_timeout: float = 10,
    headers: dict[str, str] | None = None,
) -> ClientConnection:
    """A WebSocket to ``ws_url``/ws/; ``origin`` ``None`` sends no Origin header."""
    uri = f"{ws_url}/ws/" + (f"?ticket={ticket}" if ticket else "")
    extra = dict(headers or {}) | ({"Cookie": cookie} if cookie else {})
    return await connect(
        uri,
        origin=page_origin(ws_url) if origin == SAME_ORIGIN else origin,  # type: ignore[arg-type]
        additional_headers=extra,
        open_timeout=open_timeout,
        ping_interval=None,
        max_queue=None,
    )


async def recv_json(ws: ClientConnection, wait: float = 5, *, validate: bool = True) -> dict[str, Any]:
    """The next server frame, checked against docs/asyncapi.yaml.

    ``validate=False`` is for application payloads pushed with ``ws_push`` /
    ``shared.push``, which the server forwards unchanged and the spec cannot know.
    """
    raw = await asyncio.wait_for(ws.recv(decode=True), wait)
    assert isinstance(raw, str)
    message: dict[str, Any] = json.loads(raw)
    if validate:
        validate_frame(message, "server")
    return message


async def recv_type(ws: ClientConnection, frame_type: str, wait: float = 5) -> dict[str, Any]:
    """The next server frame of ``frame_type``, skipping others (bounded by ``wait``)."""
    async with asyncio.timeout(wait):
        while True:
            message = await recv_json(ws, wait)
            if message["type"] == frame_type:
                return message


async def send_json(ws: ClientConnection, frame: dict[str, Any]) -> None:
    """Send a client frame, checked against docs/asyncapi.yaml first."""
    validate_frame(frame, "client")
    await ws.send(json.dumps(frame))


async def server_close_code(ws: ClientConnection, wait: float) -> int | None:
    """Read until the connection closes (at most ``wait`` seconds); the code the server sent, if any."""
    try:
        async with asyncio.timeout(wait):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
