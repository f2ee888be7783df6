"""WebsocketCommunicator helpers for the ws service's full ASGI stack."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from tests.support.users import make_user, session_key_for

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


async def connect_user(username: str) -> tuple[WebsocketCommunicator, User, str]:
    """A new user's session cookie, connected and welcomed: the communicator, the user, the session key."""
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator, user, key


async def request(communicator: WebsocketCommunicator, message: dict[str, Any]) -> dict[str, Any]:
    """Send ``message`` and return the next frame."""
    await send_message(communicator, message)
    return await receive_message(communicator)


async def welcomed(session_key: str) -> WebsocketCommunicator:
    """A communicator connected with ``session_key`` whose first frame was the ``welcome``."""
    communicator = ws_communicator(session_key=session_key)
    connected, _ = await communicator.connect()
    assert connected
    welcome = await receive_message(communicator)
    assert welcome["type"] == "welcome", welcome
    return communicator
