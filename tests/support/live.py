"""Real clients for the services under Daphne: HTTP login, tickets, WebSockets."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


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
    origin: str | None = "http://127.0.0.1",
    open_timeout: float = 10,
) -> ClientConnection:
    uri = f"{ws_url}/ws/" + (f"?ticket={ticket}" if ticket else "")
    headers = {"Cookie": cookie} if cookie else {}
    return await connect(
        uri,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=open_timeout,
        ping_interval=None,
        max_queue=None,
    )


async def recv_json(ws: ClientConnection, wait: float = 5) -> dict[str, Any]:
    raw = await ws.recv(decode=True) if wait is None else await _recv_with_timeout(ws, wait)
    message: dict[str, Any] = json.loads(raw)
    return message


async def _recv_with_timeout(ws: ClientConnection, wait: float) -> str:
    import asyncio

    raw = await asyncio.wait_for(ws.recv(decode=True), wait)
    assert isinstance(raw, str)
    return raw
