"""WebsocketCommunicator helpers for the ws service's full ASGI stack."""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator

ALLOWED_ORIGIN = "http://localhost:8000"


def ws_communicator(
    *,
    origin: str | None = ALLOWED_ORIGIN,
    session_key: str | None = None,
    ticket: str | None = None,
    path: str = "/ws/",
) -> WebsocketCommunicator:
    from ws_service.asgi import application  # imported late: it sets Django up

    headers: list[tuple[bytes, bytes]] = [(b"host", b"localhost:8000")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if session_key is not None:
        headers.append((b"cookie", f"sessionid={session_key}".encode()))
    if ticket is not None:
        path = f"{path}?ticket={ticket}"
    return WebsocketCommunicator(application, path, headers=headers)


async def receive_message(communicator: WebsocketCommunicator, wait: float = 3) -> dict[str, Any]:
    raw = await communicator.receive_from(wait)
    message: dict[str, Any] = json.loads(raw)
    return message


async def send_message(communicator: WebsocketCommunicator, message: dict[str, Any]) -> None:
    await communicator.send_to(text_data=json.dumps(message))
