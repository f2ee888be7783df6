"""``create_demo_users``: two non-staff users for the demo, development only."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

pytestmark = pytest.mark.django_db
DEVELOPMENT = override_settings(DJANGO_ENV="development")


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("create_demo_users", *args, stdout=out)
    return out.getvalue()


@override_settings(DJANGO_ENV="production")
def test_refused_outside_development() -> None:
    with pytest.raises(CommandError, match="development only"):
        _run()
    assert not get_user_model().objects.filter(username__in=["alice", "bob"]).exists()


@DEVELOPMENT
def test_creates_two_non_staff_users_with_the_printed_passwords() -> None:
    lines = _run().splitlines()
    printed = dict(line.split()[:2] for line in lines[:2])
    assert sorted(printed) == ["alice", "bob"]
    assert printed["alice"] != printed["bob"]
    for username, password in printed.items():
        user = get_user_model().objects.get(username=username)
        assert user.check_password(password)
        assert user.is_active
        assert not user.is_staff
        assert not user.is_superuser
    assert "/accounts/login/" in lines[2]


@DEVELOPMENT
def test_a_given_password_and_a_second_run_sets_it_again() -> None:
    _run()
    output = _run("--password", "demo-pass-1")
    assert "alice demo-pass-1 (password set again)" in output
    assert get_user_model().objects.get(username="bob").check_password("demo-pass-1")
    assert get_user_model().objects.filter(username__in=["alice", "bob"]).count() == 2


@DEVELOPMENT
def test_an_empty_password_is_refused() -> None:
    with pytest.raises(CommandError, match="must not be empty"):
        _run("--password", "")
