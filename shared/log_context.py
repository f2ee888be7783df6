"""The id of the current request or WebSocket connection, for log records.

Same visibility rules as :mod:`shared.current_user`: set per request or
connection in that task's context, copied into sync_to_async threads, reset
when the request or connection ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

context_id: ContextVar[str | None] = ContextVar("log_context_id", default=None)


def new_context_id() -> str:
    """A fresh opaque id for a request or a connection."""
    return uuid.uuid4().hex


def get_context_id() -> str | None:
    """The current request or connection id, or ``None`` outside one."""
    return context_id.get()


@contextmanager
def use_context_id(value: str) -> Iterator[None]:
    """Publish ``value`` as the current request/connection id for the block."""
    token = context_id.set(value)
    try:
        yield
    finally:
        context_id.reset(token)
