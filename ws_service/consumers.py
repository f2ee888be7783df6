"""The /ws/ consumer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth import get_user_model
from redis.exceptions import RedisError

from shared.current_user import get_current_user
from shared.groups import BROADCAST_GROUP, user_group
from ws_service.protocol import (
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHENTICATED,
    ErrorCode,
    ProtocolError,
    encode,
    parse_frame,
)

logger = logging.getLogger("ws.consumer")

Handler = Callable[["ConnectionConsumer", dict[str, Any]], Awaitable[None]]


def _user_payload(user: Any) -> dict[str, Any]:
    return {"id": user.pk, "username": user.get_username()}


def current_user_from_orm() -> dict[str, Any]:
    """The current user as stored, read inside sync ORM code via the ContextVar."""
    user = get_current_user()
    if user is None or not user.is_authenticated:
        raise RuntimeError("no authenticated user is published for this connection")
    stored = get_user_model()._default_manager.get(pk=user.pk)
    return _user_payload(stored)


class ConnectionConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels ships no type hints
    """One authenticated client connection.

    Joins its user's group and the broadcast group, so anything pushed with
    :mod:`shared.push` from any process reaches it on whichever replica it is.
    """

    joined_groups: list[str]

    async def connect(self) -> None:
        self.joined_groups = []
        await self.accept()
        if self.scope.get("auth_unavailable"):
            await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="authentication unavailable")
            return
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED, reason="authentication required")
            return
        try:
            for group in (user_group(user.pk), BROADCAST_GROUP):
                await self.channel_layer.group_add(group, self.channel_name)
                self.joined_groups.append(group)
        except (RedisError, OSError) as exc:
            logger.error("channel layer unavailable on connect: %s", exc)
            await self.close(code=CLOSE_TRY_AGAIN_LATER, reason="channel layer unavailable")
            return
        logger.info("connected")
        await self.send_message(
            {"type": "welcome", "user": _user_payload(user), "connection_id": self.scope["connection_id"]}
        )

    async def disconnect(self, code: int) -> None:
        for group in self.joined_groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except (RedisError, OSError) as exc:
                logger.warning("could not leave group %s: %s", group, exc)
        if self.joined_groups:
            logger.info("disconnected with code %s", code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            message = parse_frame(text_data, bytes_data)
            handler = HANDLERS.get(message["type"])
            if handler is None:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {message['type'][:64]!r}")
            await handler(self, message)
        except ProtocolError as error:
            await self.send_message(error.frame())

    async def send_message(self, message: dict[str, Any]) -> None:
        await self.send(text_data=encode(message))

    # -- client messages -------------------------------------------------

    async def on_ping(self, message: dict[str, Any]) -> None:
        await self.send_message({"type": "pong"})

    async def on_whoami(self, message: dict[str, Any]) -> None:
        user = await database_sync_to_async(current_user_from_orm)()
        await self.send_message({"type": "whoami", "user": user})

    # -- channel-layer events --------------------------------------------

    async def deliver(self, event: dict[str, Any]) -> None:
        """A payload pushed through the channel layer, forwarded unchanged."""
        await self.send_message(event["payload"])


HANDLERS: dict[str, Handler] = {
    "ping": ConnectionConsumer.on_ping,
    "whoami": ConnectionConsumer.on_whoami,
}
