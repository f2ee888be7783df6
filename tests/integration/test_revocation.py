"""Revocation on both ws servers: deactivation and deletion close sockets; tickets die with their session.

Issue #11 F4: ``is_active = False`` or deleting the user used to leave the
user's sockets working. F9: a ticket issued before logout or a password
change used to connect afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.utils import timezone
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.support.live import fetch_ticket, login, open_ws, recv_json, send_json, session_cookie
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user, session_key_for
from ws_service.protocol import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)

REVOKE_WITHIN = 2.0  # seconds


async def _read_until_closed(ws: ClientConnection, wait: float) -> None:
    async with asyncio.timeout(wait):
        for _ in range(100):
            await recv_json(ws, wait)


async def _close_code(ws: ClientConnection, wait: float) -> int:
    """Read (bounded by ``wait``) until the server closes; the close code."""
    with pytest.raises(ConnectionClosed) as closed:
        await _read_until_closed(ws, wait)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def _refused_code(ws_url: str, *, cookie: str | None = None, ticket: str | None = None) -> int:
    ws = await open_ws(ws_url, cookie=cookie, ticket=ticket)
    return await _close_code(ws, 5)


async def _sockets_of(ws_server: DaphneServer, web_server: DaphneServer, username: str) -> list[ClientConnection]:
    """Two welcomed sockets of a new user: one by session cookie, one by ticket."""
    await sync_to_async(make_user)(username)
    http = await login(web_server.http_url, username, PASSWORD)
    ticket = (await fetch_ticket(http))["ticket"]
    sockets = [
        await open_ws(ws_server.ws_url, cookie=session_cookie(http)),
        await open_ws(ws_server.ws_url, ticket=ticket),
    ]
    await http.aclose()
    for ws in sockets:
        assert (await recv_json(ws))["type"] == "welcome"
        await send_json(ws, {"type": "whoami"})
        assert (await recv_json(ws))["user"]["username"] == username
    return sockets


async def _closed_within(sockets: list[ClientConnection], change: Callable[[], object]) -> float:
    """Apply ``change`` (sync, committed) and the seconds until every socket closed with 4401."""
    started = time.monotonic()
    await sync_to_async(change)()
    codes = await asyncio.gather(*(_close_code(ws, REVOKE_WITHIN + 1) for ws in sockets))
    elapsed = time.monotonic() - started
    assert codes == [CLOSE_UNAUTHENTICATED] * len(sockets)
    return elapsed


def _deactivate(username: str) -> Callable[[], None]:
    def change() -> None:
        user = User.objects.get(username=username)
        user.is_active = False
        user.save()

    return change


async def test_deactivating_a_user_closes_their_sockets_within_2s(
    ws_server: DaphneServer, web_server: DaphneServer
) -> None:
    sockets = await _sockets_of(ws_server, web_server, "dora")
    assert await _closed_within(sockets, _deactivate("dora")) < REVOKE_WITHIN


async def test_deactivation_through_update_fields_closes_sockets_too(
    ws_server: DaphneServer, web_server: DaphneServer
) -> None:
    """The admin saves every field; code may save only ``is_active``: both send post_save."""
    sockets = await _sockets_of(ws_server, web_server, "dana")

    def change() -> None:
        user = User.objects.get(username="dana")
        user.is_active = False
        user.save(update_fields=["is_active"])

    assert await _closed_within(sockets, change) < REVOKE_WITHIN


async def test_deleting_a_user_closes_their_sockets_within_2s(
    ws_server: DaphneServer, web_server: DaphneServer
) -> None:
    sockets = await _sockets_of(ws_server, web_server, "dave")
    assert await _closed_within(sockets, lambda: User.objects.get(username="dave").delete()) < REVOKE_WITHIN


async def test_a_deactivated_users_session_cannot_connect_again(ws_server: DaphneServer) -> None:
    user = await sync_to_async(make_user)("dirk")
    key = await sync_to_async(session_key_for)(user)
    await sync_to_async(_deactivate("dirk"))()
    assert await _refused_code(ws_server.ws_url, cookie=f"sessionid={key}") == CLOSE_UNAUTHENTICATED


async def test_a_ticket_issued_before_logout_is_refused(ws_server: DaphneServer, web_server: DaphneServer) -> None:
    await sync_to_async(make_user)("tina")
    http = await login(web_server.http_url, "tina", PASSWORD)
    ticket = (await fetch_ticket(http))["ticket"]
    response = await http.post(
        "/accounts/logout/", headers={"X-CSRFToken": http.cookies["csrftoken"], "Origin": web_server.http_url}
    )
    assert response.status_code == 302
    await http.aclose()
    assert await _refused_code(ws_server.ws_url, ticket=ticket) == CLOSE_UNAUTHENTICATED


async def test_a_ticket_issued_before_a_password_change_is_refused(
    ws_server: DaphneServer, web_server: DaphneServer
) -> None:
    await sync_to_async(make_user)("tom")
    http = await login(web_server.http_url, "tom", PASSWORD)
    ticket = (await fetch_ticket(http))["ticket"]
    await http.aclose()

    def change_password() -> None:
        user = User.objects.get(username="tom")
        user.set_password("another-long-password-77")
        user.save()

    await sync_to_async(change_password)()
    assert await _refused_code(ws_server.ws_url, ticket=ticket) == CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize("end", ["expire", "delete"])
async def test_a_ticket_whose_session_is_gone_is_refused(
    ws_server: DaphneServer, web_server: DaphneServer, end: str
) -> None:
    await sync_to_async(make_user)(f"tess-{end}")
    http = await login(web_server.http_url, f"tess-{end}", PASSWORD)
    ticket = (await fetch_ticket(http))["ticket"]
    key = http.cookies["sessionid"]
    await http.aclose()
    sessions = Session.objects.filter(session_key=key)
    if end == "expire":
        await sessions.aupdate(expire_date=timezone.now())  # expired, not yet cleared
    else:
        await sessions.adelete()
    assert await _refused_code(ws_server.ws_url, ticket=ticket) == CLOSE_UNAUTHENTICATED
