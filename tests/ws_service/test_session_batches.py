"""Handshakes with sessions arriving together are resolved in batches: two queries per batch, every check per session.

The statements are counted as PostgreSQL receives them from any thread
(``CursorWrapper.execute``; they run on the authentication threads), against
the real test database.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib import auth
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db.backends.utils import CursorWrapper
from django.test import override_settings
from django.utils import timezone
from django.utils.crypto import salted_hmac

from tests.support.users import make_user, make_users, session_key_for
from ws_service.auth import Credentials, resolve

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 8
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
OLD_SECRET = "an-old-secret-key-that-was-rotated-out-0123456789-abcdefghijklmnop"


@pytest.fixture
def statements() -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement (and its parameters) sent while the test runs, by any thread, but naming connections."""
    sent: list[tuple[str, Any]] = []
    original = CursorWrapper.execute

    def counted(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        if "application_name" not in sql:
            sent.append((sql, params))
        return original(self, sql, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", counted)
        yield sent


async def _resolve_together(keys: list[str]) -> list[int | None]:
    """Resolve the keys' handshakes all at once; the user id each proves (``None``: anonymous)."""
    resolutions = await asyncio.gather(*(resolve(Credentials(ticket=None, session_key=key)) for key in keys))
    return [resolution.user.pk if resolution.user.is_authenticated else None for resolution in resolutions]


def _session(user: User | None, **data: object) -> str:
    """A stored session (as the login view would make it for ``user``, then ``data`` overriding); its key."""
    store = SessionStore()
    if user is not None:
        store[auth.SESSION_KEY] = str(user.pk)
        store[auth.BACKEND_SESSION_KEY] = MODEL_BACKEND
        store[auth.HASH_SESSION_KEY] = user.get_session_auth_hash()
    for name, value in data.items():
        if value is None:
            del store[name]
        else:
            store[name] = value
    store.create()
    assert store.session_key is not None
    return store.session_key


@override_settings(WS_AUTH_BATCH_SIZE=BATCH)
async def test_a_burst_of_distinct_sessions_costs_two_queries_per_batch(statements: list[tuple[str, Any]]) -> None:
    users = await sync_to_async(make_users)("burst", 30)
    keys = [await sync_to_async(session_key_for)(user) for user in users]
    statements.clear()
    assert await _resolve_together(keys) == [user.pk for user in users]
    assert len(statements) == math.ceil(len(keys) / BATCH) * 2, statements
    session_reads = [params for sql, params in statements if "django_session" in sql]
    assert len(session_reads) == math.ceil(len(keys) / BATCH)
    assert max(sum(param in keys for param in params) for params in session_reads) == BATCH


@override_settings(WS_AUTH_BATCH_SIZE=BATCH)
async def test_handshakes_of_one_session_share_its_read(statements: list[tuple[str, Any]]) -> None:
    alice = await sync_to_async(make_user)("alice")
    key = await sync_to_async(session_key_for)(alice)
    statements.clear()
    assert await _resolve_together([key] * (3 * BATCH)) == [alice.pk] * (3 * BATCH)
    assert len(statements) == 2


async def test_a_lone_handshake_is_read_at_once_in_two_queries(statements: list[tuple[str, Any]]) -> None:
    alice = await sync_to_async(make_user)("alice")
    key = await sync_to_async(session_key_for)(alice)
    statements.clear()
    assert await _resolve_together([key]) == [alice.pk]
    assert len(statements) == 2


def _every_case() -> tuple[dict[str, int | None], User]:
    """Sessions for every outcome, keyed by session key, with the user each must prove."""
    names = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")
    alice, bob, carol, dave, erin, frank, grace = (make_user(name) for name in names)
    cases: dict[str, int | None] = {
        session_key_for(alice): alice.pk,
        session_key_for(alice): alice.pk,  # a second session of the same user
        _session(bob, **{auth.HASH_SESSION_KEY: "0" * 64}): None,  # wrong hash
        _session(bob, **{auth.HASH_SESSION_KEY: None}): None,  # no hash
        _session(bob, **{auth.BACKEND_SESSION_KEY: "tests.not.a.Backend"}): None,  # bad backend
        _session(bob, **{auth.BACKEND_SESSION_KEY: "axes.backends.AxesStandaloneBackend"}): None,  # finds no user
        _session(bob, **{auth.BACKEND_SESSION_KEY: None}): None,  # no backend
        _session(bob, **{auth.SESSION_KEY: "not-a-number"}): None,  # malformed user id
        _session(None): None,  # anonymous session (no user)
        "a" * 32: None,  # no such session
    }
    inactive = _session(carol)
    carol.is_active = False
    carol.save()
    cases[inactive] = None
    deleted = _session(dave)
    dave.delete()
    cases[deleted] = None
    expired = _session(erin)
    Session.objects.filter(session_key=expired).update(expire_date=timezone.now() - timedelta(seconds=1))
    cases[expired] = None
    # Only a SECRET_KEY_FALLBACKS key verifies this one's hash: accepted (and not written, see test_session_security).
    old_hash = salted_hmac(
        "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash",
        frank.password,
        secret=OLD_SECRET,
        algorithm="sha256",
    ).hexdigest()
    cases[_session(frank, **{auth.HASH_SESSION_KEY: old_hash})] = frank.pk
    password_changed = _session(grace)
    grace.set_password("a-different-password-123")
    grace.save()
    cases[password_changed] = None
    return cases, frank


@override_settings(SECRET_KEY_FALLBACKS=[OLD_SECRET])
async def test_every_check_holds_per_session_inside_one_batch(statements: list[tuple[str, Any]]) -> None:
    cases, frank = await sync_to_async(_every_case)()

    def change_password() -> None:  # the last session of frank is now outdated; the fallback one is too
        frank.set_password("a-different-password-123")
        frank.save()

    fallback_key = next(key for key, pk in cases.items() if pk == frank.pk)
    keys = list(cases)
    statements.clear()
    assert dict(zip(keys, await _resolve_together(keys), strict=True)) == cases
    assert len(statements) == 2  # one batch: the sessions, then their users
    # The same key twice in one batch resolves twice; after a password change neither of frank's sessions proves him.
    await sync_to_async(change_password)()
    assert await _resolve_together([fallback_key, fallback_key, keys[0]]) == [None, None, cases[keys[0]]]
