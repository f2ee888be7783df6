"""Push JSON payloads to WebSocket clients through the channel layer.

Works from any process that shares the channel layer (the web service, a
management command, a worker): the ws consumers forward ``deliver`` events to
their clients unchanged. Every group send is timed in
``ws_channel_layer_send_seconds`` (docs/operations.md: Metrics).
"""

from __future__ import annotations

import time
from typing import Any, Final

from channels.layers import get_channel_layer
from prometheus_client import Histogram

from shared.groups import BROADCAST_GROUP, user_group

DELIVER_EVENT = "deliver"

# Events sent into the channel layer by group_send: "deliver" (shared.push) and
# "topic.message" (shared.messaging), as bounded label values.
SEND_EVENTS: Final = ("deliver", "topic_message")
CHANNEL_LAYER_SEND_SECONDS = Histogram(
    "ws_channel_layer_send_seconds",
    "Duration of a channel-layer group_send (Redis round trips included, failed sends too), by event.",
    ["event"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
_SEND_TIMERS: Final = {event: CHANNEL_LAYER_SEND_SECONDS.labels(event) for event in SEND_EVENTS}


async def timed_group_send(group: str, message: dict[str, Any], *, event: str) -> None:
    """``group_send`` on the default channel layer, observed in ``ws_channel_layer_send_seconds``."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("CHANNEL_LAYERS is not configured")
    started = time.perf_counter()
    try:
        await layer.group_send(group, message)
    finally:
        _SEND_TIMERS[event].observe(time.perf_counter() - started)


async def _group_send(group: str, payload: dict[str, Any]) -> None:
    await timed_group_send(group, {"type": DELIVER_EVENT, "payload": payload}, event="deliver")


async def push_to_user(user_id: int, payload: dict[str, Any]) -> None:
    """Send ``payload`` to every open connection of a user."""
    await _group_send(user_group(user_id), payload)


async def broadcast(payload: dict[str, Any]) -> None:
    """Send ``payload`` to every open authenticated connection."""
    await _group_send(BROADCAST_GROUP, payload)
