"""The client's event API: ``on(type, callback)`` handlers and async event streams.

An event is a plain ``dict`` with a string ``"type"``: either a frame from the
server exactly as received (``welcome``, ``message``, ``ack``, ``subscribed``,
``presence_diff``, ``notification``, ``error``, …) or a lifecycle event of the
client itself:

* ``{"type": "disconnected", "code": int | None, "reason": str}``: a connection
  ended or a connection attempt failed (``code`` is ``None`` when no WebSocket
  was established);
* ``{"type": "reconnecting", "attempt": int, "delay": float}``: the client sleeps
  ``delay`` seconds before attempt number ``attempt`` (1-based);
* ``{"type": "closed", "code": int | None, "reason": str, "terminal": bool}``:
  the client stopped for good, always the last event. ``terminal`` is true when
  the server refused it (4401/4403) rather than :meth:`WsClient.close` being
  called.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("wsclient.events")

Event = dict[str, Any]
Callback = Callable[[Event], Awaitable[None] | None]
#: Handlers registered for this type receive every event.
ANY = "*"
#: Seconds :meth:`EventHub.close` waits for async handlers before cancelling them.
HANDLER_GRACE = 5.0


class EventStream:
    """An async iterator over the events emitted after it was created.

    Buffered without limit, so a slow consumer never stalls the connection;
    iteration ends after the ``closed`` event.
    """

    def __init__(self, hub: EventHub) -> None:
        """Register with ``hub``; use :meth:`EventHub.stream` instead."""
        self._hub = hub
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._finished = False

    def _put(self, event: Event | None) -> None:
        self._queue.put_nowait(event)

    def __aiter__(self) -> EventStream:
        """The stream is its own iterator."""
        return self

    async def __anext__(self) -> Event:
        """The next event; ``StopAsyncIteration`` once the client has closed."""
        if self._finished:
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._finished = True
            self._hub.discard(self)
            raise StopAsyncIteration
        return event

    async def get(self, *types: str) -> Event:
        """The next event of one of ``types`` (any type if none given); skips the others.

        Raises ``EOFError`` when the stream has ended. Bound the wait with
        ``asyncio.timeout``.
        """
        async for event in self:
            if not types or event["type"] in types:
                return event
        raise EOFError("the client has closed")

    def pending(self) -> int:
        """How many events are buffered and not yet read."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stop receiving events (iteration ends after the buffered ones)."""
        self._hub.discard(self)
        self._put(None)


class EventHub:
    """Dispatches events to callbacks and streams."""

    def __init__(self) -> None:
        """Start with no handlers and no streams."""
        self._handlers: dict[str, list[Callback]] = {}
        self._streams: set[EventStream] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def on(self, event_type: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for each event of ``event_type`` (``"*"``: all).

        ``callback`` may be a plain function or a coroutine function; coroutines
        run as tasks, so a slow handler does not hold up the connection.
        Returns a function that removes the handler.
        """
        self._handlers.setdefault(event_type, []).append(callback)

        def remove() -> None:
            handlers = self._handlers.get(event_type, [])
            if callback in handlers:
                handlers.remove(callback)

        return remove

    def stream(self) -> EventStream:
        """A new stream of every event from now on."""
        stream = EventStream(self)
        if self._closed:
            stream._put(None)
        else:
            self._streams.add(stream)
        return stream

    def discard(self, stream: EventStream) -> None:
        """Forget ``stream`` (it receives nothing more)."""
        self._streams.discard(stream)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to the matching handlers and to every stream."""
        for stream in list(self._streams):
            stream._put(event)
        for callback in [*self._handlers.get(event["type"], ()), *self._handlers.get(ANY, ())]:
            try:
                result = callback(event)
            except Exception:
                logger.exception("event handler for %r failed", event["type"])
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(self._guard(result, event["type"]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(awaitable: Awaitable[None], event_type: str) -> None:
        try:
            await awaitable
        except Exception:
            logger.exception("event handler for %r failed", event_type)

    async def close(self) -> None:
        """End every stream and wait (at most ``HANDLER_GRACE`` seconds) for running async handlers."""
        self._closed = True
        for stream in list(self._streams):
            stream._put(None)
        self._streams.clear()
        if self._tasks:
            _, still_running = await asyncio.wait(set(self._tasks), timeout=HANDLER_GRACE)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running)
