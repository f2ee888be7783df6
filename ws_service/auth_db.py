"""Where WebSocket authentication talks to the database: a few threads, one connection each.

Channels' ``database_sync_to_async`` runs every call on the one
thread-sensitive thread, so handshakes would wait for each other's queries.
Authentication instead runs on its own pool of ``WS_AUTH_DB_CONNECTIONS``
threads per process. Django keeps one connection per thread, so the pool
holds at most that many PostgreSQL connections (``application_name``
``ws-auth <pid>``), kept between handshakes like any persistent connection
(``DATABASE_CONN_MAX_AGE``), never more, and never one per handshake:

* a connection belongs to its thread, so an exception or a handshake
  cancelled mid-query (the client left) cannot leak it: the thread finishes
  the query and keeps the connection for the next handshake;
* a handshake cancelled before its turn never runs at all;
* no ``SELECT 1`` health check before each use (``CONN_HEALTH_CHECKS``
  would make one per handshake): a kept connection that turns out dead (the
  database restarted) fails its first query, is closed, and the work runs
  once more on a fresh connection. A connection that saw an error is checked
  and closed as Django does after a request.

The resolving function runs with a copy of the caller's context (connection
id and user for log records), as ``sync_to_async`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

APPLICATION_NAME = "ws-auth"
THREAD_NAME_PREFIX = "ws-auth-db"


def _prepare() -> bool:
    """Close this thread's connection if it is too old or broken; whether a kept one will be used.

    The health check Django would run before the next query is marked done:
    a dead connection is found by the query itself (see :func:`_run`).
    """
    connection = connections[DEFAULT_DB_ALIAS]
    connection.close_if_unusable_or_obsolete()
    if connection.connection is None:
        return False
    connection.health_check_done = True  # type: ignore[attr-defined]  # Django's flag, not in django-stubs
    return True


def application_name(pid: int | None = None) -> str:
    """``ws-auth <pid>``: the process's authentication connections, told apart in ``pg_stat_activity``."""
    return f"{APPLICATION_NAME} {os.getpid() if pid is None else pid}"


def _name_new_connection() -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.connection is None:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('application_name', %s, false)", [application_name()])


def _run[T, R](function: Callable[[T], R], argument: T) -> R:
    """``function(argument)`` on this thread's connection; once more on a fresh one if a kept one died."""
    reused = _prepare()
    try:
        _name_new_connection()
        return function(argument)
    except (OperationalError, InterfaceError):
        if not reused:
            raise
        with contextlib.suppress(DatabaseError):
            connections[DEFAULT_DB_ALIAS].close()
        _name_new_connection()
        return function(argument)
    finally:
        with contextlib.suppress(DatabaseError):
            connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()


class AuthDatabase:
    """A bounded pool of threads (and so of database connections) for authentication queries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=THREAD_NAME_PREFIX)

    async def run[T, R](self, function: Callable[[T], R], argument: T) -> R:
        """Run ``function(argument)`` on one of the pool's threads and connections."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, context.run, _run, function, argument)


@cache
def get_auth_database() -> AuthDatabase:
    """This process's pool (``WS_AUTH_DB_CONNECTIONS`` threads, created on first use)."""
    size: int = settings.WS_AUTH_DB_CONNECTIONS
    return AuthDatabase(size)
