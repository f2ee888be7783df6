"""Push JSON payloads to WebSocket clients through the channel layer.

Works from any process that shares the channel layer (the web service, a
management command, a worker): the ws consumers forward ``deliver`` events to
their clients unchanged.
"""

from __future__ import annotations

from typing import Any

from channels.layers import get_channel_layer

from shared.groups import BROADCAST_GROUP, user_group

DELIVER_EVENT = "deliver"


async def _group_send(group: str, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    await layer.group_send(group, {"type": DELIVER_EVENT, "payload": payload})


async def push_to_user(user_id: int, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every open connection of a user."""
    await _group_send(user_group(user_id), payload)


async def broadcast(payload: dict[str, Any]) -> None:
    """Send ``payload`` to every open authenticated connection."""
    await _group_send(BROADCAST_GROUP, payload)
