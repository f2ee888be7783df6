"""Users and logged-in sessions for tests (committed rows, visible to servers)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.test import Client

PASSWORD = "correct-horse-battery-staple-42"


def make_user(username: str, *, password: str = PASSWORD, **extra: object) -> User:
    return User.objects.create_user(username, password=password, **extra)  # type: ignore[arg-type]


def make_users(prefix: str, count: int) -> list[User]:
    """``count`` users quickly (one hashed password shared by all)."""
    hashed = make_password(PASSWORD)
    User.objects.bulk_create([User(username=f"{prefix}{i}", password=hashed) for i in range(count)])
    return list(User.objects.filter(username__startswith=prefix).order_by("id"))


def session_key_for(user: User) -> str:
    """A real Django session for ``user``, as the login view would create it."""
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def client_for(user: User) -> Client:
    """A Django test client logged in as ``user``."""
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, url: str, body: object) -> Any:
    """POST ``body`` as JSON."""
    return client.post(url, data=json.dumps(body), content_type="application/json")
