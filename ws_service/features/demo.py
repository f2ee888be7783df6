"""The demo requests: ``ping`` (answered with ``pong``) and ``whoami`` (the current user, read through the ORM)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from shared.current_user import get_current_user
from ws_service.frames import frames
from ws_service.kernel import KernelConsumer, user_payload


def current_user_from_orm() -> dict[str, Any]:
    """The current user as stored, read inside sync ORM code via the ContextVar."""
    user = get_current_user()
    if user is None or not user.is_authenticated:
        raise RuntimeError("no authenticated user is published for this connection")
    stored = get_user_model()._default_manager.get(pk=user.pk)
    return user_payload(stored)


async def on_ping(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    await consumer.reply({"type": "pong"})


async def on_whoami(consumer: KernelConsumer, message: dict[str, Any]) -> None:
    user = await database_sync_to_async(current_user_from_orm)()
    await consumer.reply({"type": "whoami", "user": user})


frames.request("ping", on_ping)
frames.request("whoami", on_whoami)
frames.sends("pong", "whoami")
