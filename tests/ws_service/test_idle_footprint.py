"""What an idle connection holds (issue #13, item 2): one task, and no event queue until an event comes.

The bytes are measured by ``python -m bench memprofile``; here the structure
that makes them small is checked, so it cannot silently come back: Channels'
``await_many_dispatch`` kept two extra tasks per connection (the server's
``receive`` and an ``asyncio.Queue.get``) and an ``asyncio.Queue`` of events.
"""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from shared.push import push_to_user
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_users, session_key_for
from ws_service.kernel import KernelConsumer
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)

EXTRA = 5


async def _open(key: str) -> WebsocketCommunicator:
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator


async def _quiet_task_count() -> int:
    await asyncio.sleep(0.2)  # let finished helper tasks go
    return len(asyncio.all_tasks())


async def test_an_idle_connection_is_one_task_with_no_event_queue() -> None:
    users = await sync_to_async(make_users)("lean", EXTRA + 1)
    keys = [await sync_to_async(session_key_for)(user) for user in users]
    first = await _open(keys[0])  # starts the per-process tasks (node, slots, monitors)
    before = await _quiet_task_count()
    others = [await _open(key) for key in keys[1:]]
    after = await _quiet_task_count()
    # The communicator runs each connection's application in one task: nothing else per connection.
    assert after - before == EXTRA
    consumers = [c for c in registry.connections if isinstance(c, KernelConsumer)]
    assert len(consumers) == EXTRA + 1
    assert all(consumer.pending is None and consumer.drainer is None for consumer in consumers)
    # An event reaching an idle connection is handled (by a short-lived task), then the queue is gone again.
    await push_to_user(users[0].pk, {"type": "notification", "text": "hello"})
    assert (await receive_message(first, wait=5)) == {"type": "notification", "text": "hello"}
    await send_message(first, {"type": "ping"})
    assert (await receive_message(first))["type"] == "pong"
    assert await _quiet_task_count() == after
    assert all(consumer.pending is None and consumer.drainer is None for consumer in consumers)
    for communicator in (first, *others):
        await communicator.disconnect()
