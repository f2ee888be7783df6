"""The user on whose behalf the current code runs, as a ContextVar.

Both services publish it: the HTTP middleware for each request
(:class:`web_service.middleware.CurrentUserMiddleware`) and the WebSocket auth
middleware for the whole life of a connection
(:class:`ws_service.auth.TicketOrSessionAuthMiddleware`). Code that needs
"who is doing this" (model mixins, log filters, permission checks) calls
:func:`get_current_user` instead of threading a request or scope through.

Visibility rules (these follow from how ``contextvars`` and asgiref work):

* The value belongs to the *context* that set it, not to a thread or an
  instance. Code later in the same coroutine, and everything it awaits
  directly, sees it.
* An ``asyncio`` task copies its creator's context when it is created. A task
  created inside :func:`use_current_user` sees the user even after the block
  ends; a value it sets itself is never seen by its creator. Tasks created
  before the block do not see it.
* ``sync_to_async`` and ``database_sync_to_async`` run the function in a
  thread with a *copy* of the caller's context, so sync ORM code called from a
  consumer or an async view sees the user. asgiref copies changed variables
  back into the caller when the call returns; do not set the user inside sync
  code, set it in the async caller.
* ``async_to_sync`` likewise carries the caller's context into the event loop.
* Concurrent connections and requests run in separate tasks, each with its
  own context, so one connection's user is never visible to another.
  Nothing is stored on module globals, consumers or middleware instances.
* The value is reset when the request or connection ends (the context manager
  resets in ``finally``), so a worker thread or task reused afterwards sees
  ``None``. Plain ``threading.Thread`` objects start with an empty context and
  never see it.

The stored value is a resolved user object (``AnonymousUser`` for visitors),
never a lazy ``SimpleLazyObject``: reading it never queries the database, so
it is safe in async code and in log filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    type UserLike = AbstractBaseUser | AnonymousUser
else:
    type UserLike = object

current_user: ContextVar[UserLike | None] = ContextVar("current_user", default=None)


def get_current_user() -> UserLike | None:
    """The user of the current request or connection; ``None`` outside one."""
    return current_user.get()


def get_current_user_id() -> int | None:
    """The current user's primary key, or ``None`` when anonymous or unset."""
    user = current_user.get()
    if user is None or not user.is_authenticated:
        return None
    pk = user.pk
    return int(pk) if pk is not None else None


@contextmanager
def use_current_user(user: UserLike | None) -> Iterator[None]:
    """Publish ``user`` for the duration of the block, and always reset it."""
    token = current_user.set(user)
    try:
        yield
    finally:
        current_user.reset(token)
