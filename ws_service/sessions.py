"""Reading Django sessions and the users they prove, read-only, many at once.

Both functions take a batch and make a fixed number of queries for it,
whatever its size: :func:`load_sessions` one for the session rows
(``session_key IN (...)``, database engine), :func:`session_users` one per
authentication backend for the users (``pk IN (...)``, when the backend is
Django's ``ModelBackend`` or does not override its ``get_user``; any other
backend is asked user by user, as ``auth.get_user`` would). A batch of one
is the single handshake's read: there is one code path for every check.

The checks are those of ``auth.get_user`` (the session's backend is one of
``AUTHENTICATION_BACKENDS``, the backend returns the user (so
``is_active`` for ``ModelBackend``), the session hash matches, with
``SECRET_KEY_FALLBACKS``), without its writes: ``auth.get_user`` cycles the
session key when only a fallback key verifies the hash, and flushes the
session when none does. The ws service must never write sessions (doing so
would log the browser out of the web service).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import import_module
from typing import Any, cast

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from shared.current_user import UserLike

type SessionData = dict[str, Any]
#: A session's data (empty when it does not exist or has expired) and its expiry, when the engine tells.
type LoadedSession = tuple[SessionData, float | None]


def load_sessions(session_keys: Iterable[str]) -> dict[str, LoadedSession]:
    """Each session's data (empty when missing or expired) and expiry, keyed by session key.

    The database engine: one query for all of them, keeping each row's
    expiry (what the cache needs). Any other engine: its own ``load()`` per
    key, expiry unknown (``None``).
    """
    keys = list(dict.fromkeys(session_keys))
    store_class = import_module(settings.SESSION_ENGINE).SessionStore
    if store_class is not DatabaseSessionStore:
        return {key: (store_class(key).load(), None) for key in keys}
    loaded: dict[str, LoadedSession] = dict.fromkeys(keys, ({}, None))
    if not keys:
        return loaded
    # What DatabaseSessionStore.load() does (well-formed keys, not expired), for all keys at once.
    rows = DatabaseSessionStore.get_model_class().objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
    decoder = DatabaseSessionStore()
    for row in rows:
        data: SessionData = decoder.decode(row.session_data)
        loaded[row.session_key] = (data, row.expire_date.timestamp())
    return loaded


def _claimed(data: SessionData) -> tuple[Any, str] | None:
    """The user id and backend path a session claims, when it claims one of ours."""
    try:
        user_id = auth.get_user_model()._meta.pk.to_python(data[auth.SESSION_KEY])
        backend_path = data[auth.BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    return user_id, backend_path


def _users_of(backend: BaseBackend, user_ids: set[Any]) -> dict[Any, Any]:
    """What ``backend.get_user`` returns for each id (absent: ``None``), in one query for ``ModelBackend``.

    A backend without ``get_user`` (django-axes' ``AxesStandaloneBackend``
    only checks lockouts) proves no user: where ``auth.get_user`` would
    raise ``AttributeError``, the handshake is anonymous (4401).
    """
    if not hasattr(backend, "get_user"):
        return {}
    if isinstance(backend, ModelBackend) and type(backend).get_user is ModelBackend.get_user:
        # ModelBackend.get_user, for all ids: the user, if user_can_authenticate (is_active).
        manager = auth.get_user_model()._default_manager
        return {user.pk: user for user in manager.filter(pk__in=user_ids) if backend.user_can_authenticate(user)}
    return {user_id: backend.get_user(user_id) for user_id in user_ids}


def _hash_matches(session_hash: Any, user: Any) -> bool:
    if not session_hash:
        return False
    return constant_time_compare(session_hash, user.get_session_auth_hash()) or any(
        constant_time_compare(session_hash, fallback) for fallback in user.get_session_auth_fallback_hash()
    )


def session_users(sessions: Sequence[SessionData]) -> list[UserLike | None]:
    """The user each session's data proves (``None``: none), checked like ``auth.get_user`` but read-only."""
    claims = [_claimed(data) for data in sessions]
    wanted: dict[str, set[Any]] = {}
    for claim in claims:
        if claim is not None:
            wanted.setdefault(claim[1], set()).add(claim[0])
    found = {path: _users_of(auth.load_backend(path), ids) for path, ids in wanted.items()}
    users: list[UserLike | None] = []
    for data, claim in zip(sessions, claims, strict=True):
        user = None if claim is None else found[claim[1]].get(claim[0])
        ok = user is not None and _hash_matches(data.get(auth.HASH_SESSION_KEY), user)
        users.append(cast("UserLike", user) if ok else None)
    return users
