"""The id of the current request or WebSocket connection, for log records.

Same visibility rules as :mod:`shared.current_user`: set per request or
connection in that task's context, copied into sync_to_async threads, reset
when the request or connection ends.

Each id has a *kind*, ``"request"`` or ``"connection"``, so that structured
logs can name it ``request_id`` or ``connection_id``. A context published
without a kind takes the process's default kind (:func:`set_default_kind`):
the ws service's contexts are connections, the web service's are requests.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Literal, get_args

ContextKind = Literal["request", "connection"]
CONTEXT_KINDS: tuple[ContextKind, ...] = get_args(ContextKind)

context_id: ContextVar[str | None] = ContextVar("log_context_id", default=None)
context_kind: ContextVar[ContextKind | None] = ContextVar("log_context_kind", default=None)

_default_kind: ContextKind = "request"


CONTEXT_ID_BYTES = 16


def new_context_id() -> str:
    """A fresh opaque id for a request or a connection: 128 random bits as 32 lowercase hex digits.

    (``uuid.uuid4().hex`` has the same form, but builds a UUID object on every handshake.)
    """
    return secrets.token_hex(CONTEXT_ID_BYTES)


def get_context_id() -> str | None:
    """The current request or connection id, or ``None`` outside one."""
    return context_id.get()


def get_context_kind() -> ContextKind:
    """What the current id identifies: its own kind, else the process's default kind."""
    return context_kind.get() or _default_kind


def set_default_kind(kind: ContextKind) -> None:
    """The kind of ids published without one (set once per process by its ASGI entry point)."""
    global _default_kind
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"unknown context kind {kind!r}: use one of {CONTEXT_KINDS}")
    _default_kind = kind


@contextmanager
def use_context_id(value: str, kind: ContextKind | None = None) -> Iterator[None]:
    """Publish ``value`` as the current request/connection id for the block."""
    id_token = context_id.set(value)
    kind_token = context_kind.set(kind)
    try:
        yield
    finally:
        context_kind.reset(kind_token)
        context_id.reset(id_token)


def use_request_id(value: str) -> AbstractContextManager[None]:
    """Publish ``value`` as the current HTTP request's id."""
    return use_context_id(value, "request")


def use_connection_id(value: str) -> AbstractContextManager[None]:
    """Publish ``value`` as the current WebSocket connection's id."""
    return use_context_id(value, "connection")
