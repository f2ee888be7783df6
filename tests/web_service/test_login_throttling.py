"""Login throttling (django-axes): the login page and the admin lock a username per client address."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tests.support.live import CSRF_INPUT
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN_URLS = ["/accounts/login/", "/admin/login/"]


def _login(url: str, username: str, password: str, address: str = "127.0.0.1") -> int:
    response = Client(REMOTE_ADDR=address).post(url, {"username": username, "password": password})
    return response.status_code


def _fail(url: str, username: str, times: int, address: str = "127.0.0.1") -> None:
    for _ in range(times):
        assert _login(url, username, "wrong-password", address) == 200  # the form again, with an error


@pytest.mark.parametrize("url", LOGIN_URLS)
def test_failures_lock_the_username_for_that_address_with_429(url: str) -> None:
    make_user("victim", is_staff=True)
    make_user("bystander", is_staff=True)
    limit: int = settings.AXES_FAILURE_LIMIT
    _fail(url, "victim", limit - 1)
    assert _login(url, "victim", "wrong-password") == 429  # the failure that reaches the limit
    response = Client(REMOTE_ADDR="127.0.0.1").post(url, {"username": "victim", "password": PASSWORD})
    assert response.status_code == 429  # even the right password, while locked out
    assert "Too many failed logins" in response.content.decode()
    assert int(response["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert _login(url, "victim", PASSWORD, address="10.9.8.7") == 302  # another address is not locked
    assert _login(url, "bystander", PASSWORD) == 302  # nor another username from the same address


def test_a_successful_login_resets_the_failures() -> None:
    make_user("forgetful")
    limit: int = settings.AXES_FAILURE_LIMIT
    for _ in range(3):
        _fail(LOGIN_URLS[0], "forgetful", limit - 1)
        assert _login(LOGIN_URLS[0], "forgetful", PASSWORD) == 302


def test_attempt_rows_are_bounded() -> None:
    make_user("target")
    limit: int = settings.AXES_FAILURE_LIMIT
    _fail(LOGIN_URLS[0], "target", limit - 1)
    assert _login(LOGIN_URLS[0], "target", "wrong-password") == 429
    rows = list(AccessAttempt.objects.values_list("username", "failures_since_start"))
    assert rows == [("target", limit)]
    for _ in range(20):  # hammering while locked out writes nothing
        assert _login(LOGIN_URLS[0], "target", "wrong-password") == 429
    assert list(AccessAttempt.objects.values_list("username", "failures_since_start")) == rows
    assert AccessLog.objects.count() == 0  # and successful logins keep no row either
    # Rows older than the lock-out window go on the next login event.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    _fail(LOGIN_URLS[0], "someone-else", 1)
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == ["someone-else"]
    assert _login(LOGIN_URLS[0], "target", PASSWORD) == 302  # the lock-out expired with them


async def test_lockout_under_the_real_web_server(web_server: DaphneServer) -> None:
    await sync_to_async(make_user)("live-victim")
    limit: int = settings.AXES_FAILURE_LIMIT
    origin = web_server.http_url
    async with httpx.AsyncClient(base_url=origin, timeout=10) as client:
        statuses = []
        for password in ["wrong"] * limit + [PASSWORD]:
            page = await client.get("/accounts/login/")
            match = CSRF_INPUT.search(page.text)
            assert match
            response = await client.post(
                "/accounts/login/",
                data={"username": "live-victim", "password": password, "csrfmiddlewaretoken": match.group(1)},
                headers={"Referer": f"{origin}/accounts/login/", "Origin": origin},
            )
            statuses.append(response.status_code)
    assert statuses == [200] * (limit - 1) + [429, 429]
    assert "Too many failed logins" in response.text
    assert response.headers["Retry-After"] == str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
