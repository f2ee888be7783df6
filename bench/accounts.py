"""Django in the harness process: migrate the bench database, create users and their sessions.

Authentication in the benchmark is real: each connection sends a session
cookie made here through the ORM, as the login view would make it.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Account:
    user_id: int
    username: str
    session_key: str


def setup_django(env: Mapping[str, str]) -> None:
    """Settings from ``env`` (the servers' environment), then ``django.setup()``, ``migrate`` and ``collectstatic``."""
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)


def create_accounts(prefix: str, count: int) -> list[Account]:
    """``count`` users (password ``tests.support.users.PASSWORD``), each with one session."""
    from tests.support.users import make_users, session_key_for

    return [Account(user.pk, user.get_username(), session_key_for(user)) for user in make_users(prefix, count)]


def _login_backend() -> str:
    """The backend ``Client.force_login`` records: the first configured one that can load users."""
    from django.conf import settings
    from django.contrib.auth import load_backend

    return next(path for path in settings.AUTHENTICATION_BACKENDS if hasattr(load_backend(path), "get_user"))


def create_distinct_accounts(prefix: str, count: int) -> list[Account]:
    """``count`` users with one session each, in bulk (one user per connection, as in the storm).

    Each session holds what ``django.contrib.auth.login`` stores (user id, backend,
    session auth hash), encoded by the configured session store and saved as a row of
    the database session backend: the product authenticates it like any login's.
    """
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from tests.support.users import make_users

    backend = _login_backend()
    store = SessionStore()
    expires = timezone.now() + datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    accounts: list[Account] = []
    rows: list[Session] = []
    for user in make_users(prefix, count):
        key = get_random_string(32, VALID_KEY_CHARS)
        data = {SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: backend, HASH_SESSION_KEY: user.get_session_auth_hash()}
        rows.append(Session(session_key=key, session_data=store.encode(data), expire_date=expires))
        accounts.append(Account(user.pk, user.get_username(), key))
    Session.objects.bulk_create(rows, batch_size=1000)
    return accounts
