"""WebSocket authentication: Django session cookie or one-time ticket.

Credentials are read from the scope (cheap, synchronous), then resolved in a
single call on the authentication threads (``ws_service.auth_db``: at most
``WS_AUTH_DB_CONNECTIONS`` at once per process, each on its own kept database
connection, so concurrent handshakes do not queue behind one ORM thread): a
ticket is redeemed and its user loaded, or the session is loaded and its user checked as Django's
``auth.get_user`` does (session hash, including ``SECRET_KEY_FALLBACKS``; a
password change makes the next connect anonymous), but read-only. The resolved user goes into ``scope["user"]`` and
into the current-user ContextVar for the whole life of the connection.

An explicit ticket wins over the cookie: a bad ticket is refused even when a
valid session cookie is present, so a client always learns that its ticket
failed. The ws service never writes sessions, so it cannot fixate one.

A ticket requested by a session is honoured only while that session still
authenticates the ticket's user (not logged out, expired, deleted, or
outdated by a password change), checked exactly as a session cookie is.

Sessions not in the cache are read in batches: the handshakes that arrive
while a read is in flight share the next one (``ws_service.coalesce``; a
lone handshake is read at once), ``WS_AUTH_BATCH_SIZE`` sessions per query
(``ws_service.sessions``: the session rows, then their users, two queries
per batch), the batches in parallel on the authentication threads. A
reconnect storm of N new sessions thus costs about 2·N/``WS_AUTH_BATCH_SIZE``
queries instead of 2·N; each session still gets every check on its own.

Credentials that cannot be valid cost nothing: a session key that is not 32
characters of ``[a-z0-9]`` (what Django's ``SessionBase`` generates) and a
ticket that is not 43 characters of base64url are dropped before the thread
hop, so junk handshakes make no query and never queue for a database thread.

A session's later handshakes on the same process are served from the
per-process cache (``ws_service.auth_cache``), without a thread hop. Every
handshake authenticated by session carries a :class:`Lease`, which the
consumer confirms with :func:`confirm_session` once it joined its groups:
the revocation marks of its session and user (:func:`marked_groups`) are
read right after the joins, in the connect's one pipelined round trip
(``ws_service.admission``), and if one is set, or the cached entry was
evicted meanwhile, the session is read again from the database. A revocation racing a handshake thus either
refuses it (4401) or reaches it as an event, cached or not.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.http.cookie import parse_cookie

from shared.current_user import UserLike, current_user
from shared.groups import user_group
from shared.tickets import redeem_ticket, well_formed_ticket
from shared.topics import session_group
from ws_service import metrics
from ws_service.asgi_types import ASGIApp, Receive, Scope, Send, header
from ws_service.auth_cache import Entry, get_auth_cache
from ws_service.auth_db import get_auth_database
from ws_service.coalesce import Coalescer
from ws_service.loop_local import LoopLocal
from ws_service.sessions import LoadedSession, load_sessions, session_users

logger = logging.getLogger("ws.auth")

TICKET_PARAMETER = "ticket"
# Keys made by django.contrib.sessions.backends.base.SessionBase._get_new_session_key
# (every server-side engine): 32 characters of VALID_KEY_CHARS.
SESSION_KEY_FORMAT = re.compile(r"[a-z0-9]{32}")
# The scope key of a session handshake's :class:`Lease`, removed by :func:`confirm_session`.
LEASE_KEY = "auth_lease"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a handshake offers to authenticate with."""

    ticket: str | None
    session_key: str | None


def credentials_from_scope(scope: Scope) -> Credentials:
    """The ``?ticket=`` query parameter and the session cookie of a handshake."""
    query_string = scope.get("query_string", b"")
    tickets = parse_qs(bytes(query_string).decode("latin-1")).get(TICKET_PARAMETER) if query_string else None
    cookie_header = header(scope, b"cookie")
    cookies = parse_cookie(cookie_header) if cookie_header else {}
    return Credentials(
        ticket=tickets[0] if tickets else None,
        session_key=cookies.get(settings.SESSION_COOKIE_NAME) or None,
    )


def well_formed_session_key(session_key: str) -> bool:
    """Whether ``session_key`` could have been made by Django's session store."""
    return SESSION_KEY_FORMAT.fullmatch(session_key) is not None


def plausible(credentials: Credentials) -> Credentials:
    """``credentials`` without the parts that cannot be valid (so they cost no query).

    A malformed ticket stays refused: it becomes the empty ticket, which still
    wins over the cookie and resolves to anonymous.
    """
    ticket = credentials.ticket
    session_key = credentials.session_key
    return Credentials(
        ticket=None if ticket is None else (ticket if well_formed_ticket(ticket) else ""),
        session_key=session_key if session_key is not None and well_formed_session_key(session_key) else None,
    )


@dataclass(frozen=True, slots=True)
class Lease:
    """How a session handshake's user was found, to confirm once the connection holds its groups."""

    session_key: str
    #: The cache entry that served the handshake, or ``None`` after a database read.
    entry: Entry | None = None
    #: After a database read: the session's expiry (``None``: not cacheable) and when the read started.
    expires_at: float | None = None
    read_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Resolution:
    """The authenticated user and the session group that can revoke the connection."""

    user: UserLike
    session_group: str = ""
    #: A database read of a session: its expiry, when the session engine tells (seconds since the epoch).
    expires_at: float | None = None
    lease: Lease | None = None


_ANONYMOUS = Resolution(AnonymousUser())


def _from_ticket(ticket: str) -> Resolution:
    redeemed = redeem_ticket(ticket)
    if redeemed is None:
        return _ANONYMOUS
    if redeemed.session_key:
        # The requesting session must still prove this user (logout, expiry, password change).
        user = _session_user(_load_session(redeemed.session_key)[0])
        if user is None or user.pk != redeemed.user_id:
            return _ANONYMOUS
        # The session is checked again after the joins, like a cookie's: a revocation may land before them.
        return Resolution(user, redeemed.session_group, lease=Lease(redeemed.session_key))
    user_model = auth.get_user_model()
    user = user_model._default_manager.filter(pk=redeemed.user_id).first()
    if user is None or not getattr(user, "is_active", True):
        return _ANONYMOUS
    return Resolution(cast("UserLike", user), redeemed.session_group)


def _session_user(data: dict[str, Any]) -> UserLike | None:
    """The user a session's data proves (``ws_service.sessions.session_users``, read-only)."""
    return session_users([data])[0]


def _load_session(session_key: str) -> LoadedSession:
    """The session's data, empty when it does not exist or has expired (read-only), and its expiry.

    The expiry is known for the database engine only (what the cache needs); ``None`` otherwise.
    """
    return load_sessions([session_key])[session_key]


def _from_sessions(session_keys: Sequence[str]) -> list[Resolution]:
    """Each session's resolution: one query for the sessions, one per backend for their users."""
    loaded = load_sessions(session_keys)
    users = session_users([data for data, _ in loaded.values()])
    resolved = {
        key: _ANONYMOUS if user is None else Resolution(user, session_group(key), expires_at)
        for (key, (_, expires_at)), user in zip(loaded.items(), users, strict=True)
    }
    return [resolved[key] for key in session_keys]


async def _read_sessions(session_keys: Sequence[str]) -> list[Resolution | BaseException]:
    """Resolve the sessions of handshakes that arrived together, ``WS_AUTH_BATCH_SIZE`` distinct ones per query.

    Handshakes of the same session share its read. The batches run in
    parallel on the authentication threads (so at most
    ``WS_AUTH_DB_CONNECTIONS`` at once); a batch that fails (the database is
    down) fails its handshakes only.
    """
    size: int = settings.WS_AUTH_BATCH_SIZE
    database = get_auth_database()
    distinct = list(dict.fromkeys(session_keys))
    batches = [distinct[start : start + size] for start in range(0, len(distinct), size)]
    outcomes = await asyncio.gather(*(database.run(_from_sessions, batch) for batch in batches), return_exceptions=True)
    by_key: dict[str, Resolution | BaseException] = {}
    for batch, outcome in zip(batches, outcomes, strict=True):
        resolved = [outcome] * len(batch) if isinstance(outcome, BaseException) else outcome
        by_key.update(zip(batch, resolved, strict=True))
    return [by_key[key] for key in session_keys]


# Per process (loop): handshakes' session reads that arrive together share their queries.
_session_reads = LoopLocal(lambda: Coalescer(_read_sessions, "session-reads"))


async def _read_session(session_key: str) -> Resolution:
    """The session's resolution, read from the database along with the sessions of concurrent handshakes."""
    outcome = await _session_reads.get()(session_key)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _from_session(session_key: str) -> Resolution:
    return _from_sessions([session_key])[0]


async def resolve(credentials: Credentials) -> Resolution:
    """Who the credentials prove, or anonymous.

    One thread hop when a credential is well formed and not cached; none (and no query) otherwise.
    Sessions of handshakes arriving together are read together (``_read_sessions``).
    A session's resolution carries the :class:`Lease` that :func:`confirm_session` checks.
    """
    credentials = plausible(credentials)
    if credentials.ticket is not None:  # an explicit ticket wins over the cookie
        if not credentials.ticket:
            return _ANONYMOUS
        ticket_resolution: Resolution = await get_auth_database().run(_from_ticket, credentials.ticket)
        return ticket_resolution
    session_key = credentials.session_key
    if session_key is None:
        return _ANONYMOUS
    entry = get_auth_cache().get(session_key)
    if entry is not None:
        metrics.AUTH_CACHE_HITS.inc()
        return Resolution(entry.user, entry.session_group, lease=Lease(session_key, entry))
    metrics.AUTH_CACHE_MISSES.inc()
    read_at = time.monotonic()
    resolution = await _read_session(session_key)
    if not resolution.user.is_authenticated:
        return resolution
    lease = Lease(session_key, expires_at=resolution.expires_at, read_at=read_at)
    return Resolution(resolution.user, resolution.session_group, resolution.expires_at, lease)


def marked_groups(scope: Scope) -> list[str]:
    """The groups whose revocation marks :func:`confirm_session` needs: the session's and the user's.

    None for a handshake without a :class:`Lease` (anonymous, or a ticket issued without a session). The
    connect reads them once it holds the groups, in its admission's round
    trip (``ws_service.admission``).
    """
    if LEASE_KEY not in scope:
        return []
    return [scope["session_group"], user_group(scope["user"].pk)]


async def confirm_session(scope: Scope, marked: bool) -> bool:
    """Whether the handshake's session still proves its user, once the connection holds its groups.

    Call after joining the session and user groups (from then on any
    revocation reaches the connection as an event), with ``marked``: whether
    a revocation mark of :func:`marked_groups` was set, read after the joins
    (true when Redis could not tell). Nothing to do for a handshake without
    a :class:`Lease`. With a mark, or when the cached entry that
    served the handshake was evicted meanwhile, the session is read again
    from the database (may raise ``DatabaseError``). A database read without
    a mark is cached for the session's next handshakes. A ticket requested by
    a session carries a lease too (never cached): it is checked the same way.
    """
    lease: Lease | None = scope.pop(LEASE_KEY, None)
    if lease is None:
        return True
    user = scope["user"]
    cache = get_auth_cache()
    if not marked:
        if lease.entry is None:
            if lease.expires_at is not None:
                entry = Entry(user, scope["session_group"], user_group(user.pk), lease.expires_at, lease.read_at)
                cache.put(lease.session_key, entry)
            return True
        if cache.holds(lease.session_key, lease.entry):
            return True
    again: Resolution = await get_auth_database().run(_from_session, lease.session_key)
    return bool(again.user.is_authenticated and again.user.pk == user.pk)


class TicketOrSessionAuthMiddleware:
    """Puts the authenticated user in ``scope["user"]`` and the ContextVar.

    When the database cannot be reached, ``scope["auth_unavailable"]`` is set
    and the user is anonymous; the consumer then closes with 4013 (try again
    later) instead of 4401, so clients retry rather than log in again.
    """

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.inner(scope, receive, send)
            return
        credentials = credentials_from_scope(scope)
        unavailable = False
        try:
            resolution = await resolve(credentials)
        except DatabaseError as exc:
            logger.error("authentication unavailable: database error: %s", exc)
            resolution, unavailable = _ANONYMOUS, True
        # Set and reset directly (what use_current_user does): no context-manager object per idle connection.
        token = current_user.set(resolution.user)
        try:
            # In place, not a copy: the stack's outermost middleware made the scope this connection's own.
            scope["user"] = resolution.user
            scope["session_group"] = resolution.session_group
            scope["auth_unavailable"] = unavailable
            if resolution.lease is not None:
                scope[LEASE_KEY] = resolution.lease
            del credentials, resolution  # not kept alive by this frame for the connection's life
            await self.inner(scope, receive, send)
        finally:
            current_user.reset(token)
