"""The servers' per-connection receive queue and Uvicorn's ``writable`` flag, without their idle deques.

Daphne and Uvicorn give every connection an ``asyncio.Queue`` for the
messages its application receives (``receive`` is the queue's ``get``), and
Uvicorn an ``asyncio.Event`` that says whether the socket takes writes. An
idle ``asyncio.Queue`` holds four deques (its items, its getters, its putters
and its ``join()`` event's waiters), an ``asyncio.Event`` one: a deque
allocates its first 64-slot block at once, about 0.74 KiB, so an idle
connection carried about 3 KiB (Daphne) or 3.7 KiB (Uvicorn) of empty
blocks, about a sixth of all it holds.

:class:`ReceiveQueue` and :class:`Flag` do what the servers use of those
classes with lists, which start small: a queue of messages (``put_nowait``,
``get``, ``get_nowait``, ``empty``, ``qsize``; unbounded, as the servers make
it) and a flag (``set``, ``clear``, ``is_set``, ``wait``). They are installed
by the launcher, in its own process only (:func:`install_daphne`,
:func:`install_uvicorn`); how much a connection may queue is still bounded
where it was (``ws_service.input_budget`` on Daphne, Uvicorn's read pausing).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from ws_service.daphne_version import supported


class ReceiveQueue:
    """An unbounded FIFO of messages awaited by ``get`` (what a server's per-connection ``asyncio.Queue`` does).

    Messages and waiting getters are kept in lists, in order; a getter woken
    for a message that another getter took first waits again, and one
    cancelled after being woken passes the wake-up on, so no message waits
    while a getter does. Never falsy: Daphne tests ``if application_queue:``.
    """

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] = []

    def put_nowait(self, item: Any) -> None:
        """Add ``item`` and wake the longest-waiting getter."""
        self._items.append(item)
        self._wake_next()

    def get_nowait(self) -> Any:
        """The oldest message; ``asyncio.QueueEmpty`` when there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> Any:
        """The oldest message, waiting for one."""
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter in self._getters:
                    self._getters.remove(getter)
                elif self._items:
                    self._wake_next()  # woken for a message this getter no longer takes
                raise
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)

    def _wake_next(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return


class Flag:
    """A set/clear flag awaited by ``wait`` (what Uvicorn's ``writable`` ``asyncio.Event`` does)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, *, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None  # made when a waiter has to wait

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        self._value = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        """Return once the flag is set (at once if it is)."""
        if self._value:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


def install_uvicorn() -> None:
    """Patch Uvicorn's websockets-sansio protocol (idempotent): its queue and ``writable`` become the lean ones."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    if getattr(WebSocketsSansIOProtocol, "_ws_receive_queue_patch", False):
        return
    original_init = WebSocketsSansIOProtocol.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.queue = ReceiveQueue()  # nothing was put yet: the connection is not even made
        self.writable = Flag(value=self.writable.is_set())

    setattr(WebSocketsSansIOProtocol, "__init__", __init__)  # noqa: B010  # the class is typed; patching is the point
    setattr(WebSocketsSansIOProtocol, "_ws_receive_queue_patch", True)  # noqa: B010


def install_daphne() -> bool:
    """Patch ``daphne.server.Server`` (idempotent): applications receive from a :class:`ReceiveQueue`.

    Daphne makes the queue inside ``create_application`` and hands its
    ``get`` to the application, so that method is Daphne 4's own with the
    one line changed. Install it before ``ws_service.daphne_reaper``, which
    wraps it. False (nothing patched) on a Daphne it was not written against.
    """
    from daphne.server import Server

    if getattr(Server, "_ws_receive_queue_patch", False):
        return True
    if not supported():
        return False

    def create_application(self: Any, protocol: Any, scope: Any) -> ReceiveQueue | None:
        assert "application_instance" not in self.connections[protocol]
        input_queue = ReceiveQueue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue

    Server.create_application = create_application
    Server._ws_receive_queue_patch = True
    return True
