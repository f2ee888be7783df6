"""The one registry of message types: what clients may send, what the server sends, which events it handles.

Feature modules (``ws_service/features/``) register here when imported:

* :meth:`FrameRegistry.request` - a client frame type and its handler
  ``async (consumer, message)``;
* :meth:`FrameRegistry.event` - a channel-layer event type (``"topic.message"``)
  and its handler ``async (consumer, event)``;
* :meth:`FrameRegistry.sends` - the frame types the feature sends;
* :meth:`FrameRegistry.on` - a hook other features announce with
  :meth:`FrameRegistry.emit` (``"disconnect"`` comes from the kernel,
  :data:`DRAIN_HOOK` from the process's drain).

Metrics labels (``ws_messages_received``/``ws_messages_sent``) are made from
the registered types; the AsyncAPI document and the clients are tested
against :data:`frames`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ws_service import metrics

Handler = Callable[[Any, dict[str, Any]], Awaitable[None]]
Hook = Callable[..., Awaitable[None]]

#: Emitted on :data:`frames` once per process, without arguments, when it starts draining (before its
#: connections are closed): a feature drops all of the process's state in Redis at once there, so that
#: each connection's own cleanup then costs no round trip.
DRAIN_HOOK = "drain"


class FrameRegistry:
    """Message types and their handlers; one instance per protocol (``frames`` serves /ws/)."""

    def __init__(self) -> None:
        self.requests: dict[str, Handler] = {}
        self.events: dict[str, Handler] = {}
        self.sent: set[str] = set()
        self.hooks: dict[str, list[Hook]] = {}

    def request(self, frame_type: str, handler: Handler) -> None:
        """Handle client frames of ``frame_type`` with ``handler``."""
        if frame_type in self.requests:
            raise ValueError(f"client frame type {frame_type!r} is registered twice")
        self.requests[frame_type] = handler
        metrics.track_received_type(frame_type)

    def event(self, event_type: str, handler: Handler) -> None:
        """Handle channel-layer events of ``event_type`` (as sent to ``group_send``) with ``handler``."""
        if event_type in self.events:
            raise ValueError(f"event type {event_type!r} is registered twice")
        self.events[event_type] = handler

    def sends(self, *frame_types: str) -> None:
        """The server frame types a feature sends."""
        for frame_type in frame_types:
            self.sent.add(frame_type)
            metrics.track_sent_type(frame_type)

    def on(self, hook: str, handler: Hook) -> None:
        """Run ``handler`` whenever ``hook`` is emitted."""
        self.hooks.setdefault(hook, []).append(handler)

    async def emit(self, hook: str, *args: Any) -> None:
        """Run every handler of ``hook`` in registration order."""
        for handler in self.hooks.get(hook, ()):
            await handler(*args)


# The /ws/ protocol: the kernel's own frames and events, then every feature's.
frames = FrameRegistry()
