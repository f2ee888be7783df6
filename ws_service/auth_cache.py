"""Per-process cache of resolved sessions: a session's later handshakes make no query.

A handshake with a session cookie normally costs a hop to the authentication
threads and two queries (``ws_service.auth``). Once a connection of that
session is open on this process, the next handshakes of the same session are
served from an :class:`Entry`: the user instance, shared by every connection
of the session on this process (one user object, not one per connection:
treat ``scope["user"]`` as read-only, or copy it before changing it).

Exactness under revocation does not rest on the cache alone. Every handshake
that authenticated by session, cached or not, is confirmed after it joined
its session and user groups (``ws_service.auth.confirm_session``): the
revocation marks of both groups are read in Redis right after the joins, in
the connect's one pipelined round trip (``ws_service.admission``). A revocation that happened after the
entry's database read left such a mark (it outlives any entry), and one that
happens later reaches the connection, already a member of the groups. With a
mark, or when the entry was evicted meanwhile, the session is read again from
the database. Entries are also evicted as soon as an ``auth.revoked`` event
of their session or user reaches the node, cleared when Redis lost the
process's memberships (events may have been lost), and never used past the
session's expiry or ``WS_AUTH_CACHE_SECONDS`` after their database read (the
bound for changes that send no event, see ``shared.revocation``).

Bound: an entry is added only while its session group has a local member
(after the connection joined) and evicted when the process leaves that
group, so the cache holds at most one entry per session with an open
connection on this process. Tickets (single use) and anonymous handshakes are
never cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from shared.current_user import UserLike
from shared.revocation import REVOKED_EVENT
from ws_service.loop_local import LoopLocal
from ws_service.node import Node, event_group, get_node


@dataclass(slots=True, eq=False)
class Entry:
    """A session resolved from the database: who it proves, until when."""

    user: UserLike
    session_group: str
    user_group: str
    #: The session's expiry (seconds since the epoch).
    expires_at: float
    #: ``time.monotonic()`` when the database read that produced the entry started.
    read_at: float


class AuthCache:
    """Session key → :class:`Entry` for the sessions with a connection open on this process."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._entries: dict[str, Entry] = {}
        self._by_session_group: dict[str, str] = {}
        self._by_user_group: dict[str, set[str]] = {}
        node.observe(REVOKED_EVENT, self._revoked)
        node.on_group_left(self._group_left)
        node.on_state_lost(self.clear)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session_key: str) -> Entry | None:
        """The usable entry of ``session_key``, or ``None`` (an expired one is dropped)."""
        entry = self._entries.get(session_key)
        if entry is None:
            return None
        max_age: float = settings.WS_AUTH_CACHE_SECONDS
        if (
            time.monotonic() - entry.read_at >= max_age
            or time.time() >= entry.expires_at
            or entry.session_group not in self._node.local
        ):
            self._evict(session_key)
            return None
        return entry

    def holds(self, session_key: str, entry: Entry) -> bool:
        """Whether ``entry`` is still the entry of ``session_key`` (not evicted since)."""
        return self._entries.get(session_key) is entry

    def put(self, session_key: str, entry: Entry) -> None:
        """Cache ``entry`` if caching is on and the process holds its session group (else nothing)."""
        max_age: float = settings.WS_AUTH_CACHE_SECONDS
        if max_age <= 0 or entry.session_group not in self._node.local:
            return
        self._evict(session_key)
        self._entries[session_key] = entry
        self._by_session_group[entry.session_group] = session_key
        self._by_user_group.setdefault(entry.user_group, set()).add(session_key)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
        self._by_session_group.clear()
        self._by_user_group.clear()

    def _evict(self, session_key: str) -> None:
        entry = self._entries.pop(session_key, None)
        if entry is None:
            return
        if self._by_session_group.get(entry.session_group) == session_key:
            del self._by_session_group[entry.session_group]
        keys = self._by_user_group.get(entry.user_group)
        if keys is not None:
            keys.discard(session_key)
            if not keys:
                del self._by_user_group[entry.user_group]

    def _group_left(self, group: str) -> None:
        session_key = self._by_session_group.get(group)
        if session_key is not None:
            self._evict(session_key)

    def _revoked(self, event: dict[str, Any]) -> None:
        group = event_group(event)
        if group is None:
            return
        self._group_left(group)
        for session_key in tuple(self._by_user_group.get(group, ())):
            self._evict(session_key)


_caches: LoopLocal[AuthCache] = LoopLocal(lambda: AuthCache(get_node()))


def get_auth_cache() -> AuthCache:
    """The cache of the running event loop (one per ws process)."""
    return _caches.get()
