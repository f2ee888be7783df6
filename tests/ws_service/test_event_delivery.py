"""How the node's events reach a connection waiting for a frame: at once, and in order.

A live event for a connection that waits for its next frame is handled
inside the node's fan-out (an eager task): a handler that never waits sends
its frame before the fan-out returns, and no task is scheduled for it. A
handler that does wait keeps its drain as a task, and events arriving
meanwhile queue behind it, handled by that same drain in arrival order.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from shared.channel_layer import GROUP_KEY
from shared.groups import user_group
from shared.push import DELIVER_EVENT
from tests.support.communicators import ALLOWED_ORIGIN, connect_user, receive_message
from tests.support.users import make_user, session_key_for
from ws_service.auth import TicketOrSessionAuthMiddleware
from ws_service.connection_context import ConnectionContextMiddleware
from ws_service.frames import FrameRegistry
from ws_service.kernel import KernelConsumer
from ws_service.node import get_node
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)

HOLD_EVENT = "gate.hold"
NOTE_EVENT = "gate.note"


class GateConsumer(KernelConsumer):
    """Its ``gate.hold`` event waits for :attr:`gate` before sending; ``gate.note`` sends at once."""

    frames: ClassVar[FrameRegistry] = FrameRegistry()
    gate: ClassVar[asyncio.Event | None] = None


async def on_hold(consumer: KernelConsumer, event: dict[str, Any]) -> None:
    assert GateConsumer.gate is not None
    await GateConsumer.gate.wait()
    await consumer.send_message({"type": "held", "n": event["n"]})


async def on_note(consumer: KernelConsumer, event: dict[str, Any]) -> None:
    await consumer.send_message({"type": "note", "n": event["n"]})


GateConsumer.frames.event(HOLD_EVENT, on_hold)
GateConsumer.frames.event(NOTE_EVENT, on_note)
GateConsumer.frames.sends("held", "note")

gate_application = ConnectionContextMiddleware(
    TicketOrSessionAuthMiddleware(URLRouter([path("gate/", GateConsumer.as_asgi())]))
)


async def _waiting_consumer(user_pk: int) -> KernelConsumer:
    """The user's one open connection, once its task waits for the next frame."""
    for _ in range(100):  # at most 5 s
        found = [c for c in registry.connections if isinstance(c, KernelConsumer) and c.user.pk == user_pk]
        if found and found[0].waiting:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the connection never waited for a frame")


async def test_an_event_for_a_waiting_connection_is_sent_within_the_fan_out() -> None:
    communicator, user, _ = await connect_user("eager")
    consumer = await _waiting_consumer(user.pk)
    tasks_before = len(asyncio.all_tasks())
    event = {"type": DELIVER_EVENT, "payload": {"type": "notification", "text": "now"}, GROUP_KEY: user_group(user.pk)}
    assert get_node().dispatch(event) == 1
    # Before anything else runs: the frame is out, nothing is queued, no task was left behind.
    assert communicator.output_queue.qsize() == 1
    assert consumer.pending is None
    assert consumer.drainer is None
    assert len(asyncio.all_tasks()) == tasks_before
    assert await receive_message(communicator) == {"type": "notification", "text": "now"}
    await communicator.disconnect()


async def test_events_arriving_while_a_handler_waits_join_its_drain_in_order() -> None:
    GateConsumer.gate = asyncio.Event()
    user = await sync_to_async(make_user)("gated")
    key = await sync_to_async(session_key_for)(user)
    headers = [
        (b"host", b"localhost:8000"),
        (b"origin", ALLOWED_ORIGIN.encode()),
        (b"cookie", f"sessionid={key}".encode()),
    ]
    communicator = WebsocketCommunicator(gate_application, "/gate/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    consumer = await _waiting_consumer(user.pk)
    node = get_node()
    group = user_group(user.pk)

    node.dispatch({"type": HOLD_EVENT, "n": 1, GROUP_KEY: group})
    drainer = consumer.drainer
    assert drainer is not None  # the handler waits: its drain became a task
    assert not drainer.done()
    node.dispatch({"type": NOTE_EVENT, "n": 2, GROUP_KEY: group})
    node.dispatch({"type": NOTE_EVENT, "n": 3, GROUP_KEY: group})
    assert consumer.drainer is drainer  # no second drain
    assert consumer.pending is not None
    assert [e["n"] for e in consumer.pending] == [2, 3]
    assert communicator.output_queue.qsize() == 0

    GateConsumer.gate.set()
    received = [await receive_message(communicator) for _ in range(3)]
    assert received == [{"type": "held", "n": 1}, {"type": "note", "n": 2}, {"type": "note", "n": 3}]
    await asyncio.wait_for(asyncio.shield(drainer), 3)
    assert consumer.drainer is None
    assert consumer.pending is None
    await communicator.disconnect()
