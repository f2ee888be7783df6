"""Django in the harness process: migrate the bench database, create users and their sessions.

Authentication in the benchmark is real: each connection sends a session
cookie made here through the ORM, as the login view would make it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Account:
    user_id: int
    username: str
    session_key: str


def setup_django(env: Mapping[str, str]) -> None:
    """Settings from ``env`` (the servers' environment), then ``django.setup()`` and ``migrate``."""
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def create_accounts(prefix: str, count: int) -> list[Account]:
    """``count`` users (password ``tests.support.users.PASSWORD``), each with one session."""
    from tests.support.users import make_users, session_key_for

    return [Account(user.pk, user.get_username(), session_key_for(user)) for user in make_users(prefix, count)]
