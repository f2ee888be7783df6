"""What an idle connection holds (issue #13, item 2): one task, no event queue until an event comes, a short stack.

The bytes are measured by ``python -m bench memprofile``; here the structure
that makes them small is checked, so it cannot silently come back: Channels'
``await_many_dispatch`` kept two extra tasks per connection (the server's
``receive`` and an ``asyncio.Queue.get``) and an ``asyncio.Queue`` of events;
and every middleware of the stack stayed suspended above the consumer with
its frame, its locals and its scope copy (``tests/integration/test_idle_objects.py``
counts the objects on real servers).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

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
# What decides at the handshake only, then hands the connection over (ws_service.asgi_types.hands_over).
HANDED_OVER = {
    "ProtocolTypeRouter.__call__",
    "ScopeTypeRouter.__call__",
    "HostValidator.__call__",
    "HandshakeLimitMiddleware.__call__",
    "OriginValidator.__call__",
    "FrameLimitMiddleware.__call__",
    "ConnectionLimitMiddleware.__call__",
    "URLRouter.__call__",
    "HandOverURLRouter.__call__",
    "HandOverURLRouter._awaiting",
    "AsyncConsumer.as_asgi.<locals>.app",
    "FrameLimitMiddleware.__call__.<locals>.limited_receive",
}
MAX_DEPTH = 64


async def _open(key: str) -> WebsocketCommunicator:
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator


def _suspended_in(task: asyncio.Task[Any]) -> list[str]:
    """The coroutines ``task`` is suspended in, outermost first, by qualified name."""
    names: list[str] = []
    awaiting: Any = task.get_coro()
    for _ in range(MAX_DEPTH):
        code = getattr(awaiting, "cr_code", None)
        if code is None:
            break
        names.append(code.co_qualname)
        awaiting = awaiting.cr_await
    return names


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


async def test_an_idle_connection_is_suspended_in_the_consumer_without_the_handshake_middlewares() -> None:
    """The middlewares that only decide at the handshake keep no frame (nor what it references) on its stack."""
    users = await sync_to_async(make_users)("stack", 1)
    communicator = await _open(await sync_to_async(session_key_for)(users[0]))
    await asyncio.sleep(0.1)  # idle: awaiting the next frame
    stack = _suspended_in(communicator.future)
    assert "KernelConsumer.__call__" in stack, stack  # the walk reached the consumer
    assert not HANDED_OVER.intersection(stack), stack
    assert "LimitedReceive.__call__" in stack, stack  # the frame limits' receive, which the consumer awaits
    await communicator.disconnect()


def _scopes_of(connection_id: str) -> int:
    """How many scope dicts of the connection ``connection_id`` are alive (every scope copy carries the id)."""
    gc.collect()
    return sum(1 for item in gc.get_objects() if type(item) is dict and item.get("connection_id") == connection_id)


async def test_an_idle_connection_keeps_one_scope_with_its_route_in_it() -> None:
    """The router writes ``url_route`` into the connection's own scope: no copy of it stays with the consumer."""
    users = await sync_to_async(make_users)("scope", 1)
    communicator = await _open(await sync_to_async(session_key_for)(users[0]))
    await asyncio.sleep(0.1)  # idle: awaiting the next frame
    (consumer,) = [c for c in registry.connections if isinstance(c, KernelConsumer)]
    assert consumer.scope["url_route"] == {"args": (), "kwargs": {}}
    assert _scopes_of(consumer.scope["connection_id"]) == 1
    await communicator.disconnect()
