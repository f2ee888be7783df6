"""Session-cookie and ticket authentication of WebSocket handshakes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from shared.models import WsTicket
from shared.tickets import issue_ticket
from tests.support.communicators import receive_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.auth import Credentials, credentials_from_scope
from ws_service.protocol import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)


async def _welcome_user(session_key: str | None = None, ticket: str | None = None) -> dict[str, object]:
    communicator = ws_communicator(session_key=session_key, ticket=ticket)
    connected, _ = await communicator.connect()
    assert connected
    welcome = await receive_message(communicator)
    assert welcome["type"] == "welcome", welcome
    await communicator.disconnect()
    user: dict[str, object] = welcome["user"]
    return user


async def _closed_with(session_key: str | None = None, ticket: str | None = None) -> int:
    communicator = ws_communicator(session_key=session_key, ticket=ticket)
    connected, _ = await communicator.connect()
    assert connected  # accepted, then closed with a code the client can act on
    output = await communicator.receive_output(3)
    assert output["type"] == "websocket.close"
    code: int = output["code"]
    return code


async def _user_and_session(username: str) -> tuple[User, str]:
    user = await sync_to_async(make_user)(username)
    return user, await sync_to_async(session_key_for)(user)


async def test_session_cookie_authenticates() -> None:
    alice, key = await _user_and_session("alice")
    assert await _welcome_user(session_key=key) == {"id": alice.pk, "username": "alice"}


async def test_no_credentials_closes_4401() -> None:
    assert await _closed_with() == CLOSE_UNAUTHENTICATED


async def test_unknown_session_closes_4401() -> None:
    assert await _closed_with(session_key="not-a-session") == CLOSE_UNAUTHENTICATED


async def test_ticket_works_once() -> None:
    alice = await sync_to_async(make_user)("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice)
    assert await _welcome_user(ticket=ticket) == {"id": alice.pk, "username": "alice"}
    assert await _closed_with(ticket=ticket) == CLOSE_UNAUTHENTICATED


async def test_expired_ticket_closes_4401() -> None:
    alice = await sync_to_async(make_user)("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice)
    await WsTicket.objects.aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    assert await _closed_with(ticket=ticket) == CLOSE_UNAUTHENTICATED


async def test_forged_ticket_closes_4401() -> None:
    await sync_to_async(issue_ticket)(await sync_to_async(make_user)("alice"))
    assert await _closed_with(ticket="forged-" + "A" * 40) == CLOSE_UNAUTHENTICATED


async def test_bad_ticket_is_refused_even_with_a_valid_cookie() -> None:
    _, key = await _user_and_session("alice")
    assert await _closed_with(session_key=key, ticket="forged") == CLOSE_UNAUTHENTICATED


async def test_inactive_users_ticket_is_refused() -> None:
    alice = await sync_to_async(make_user)("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice)
    await User.objects.filter(pk=alice.pk).aupdate(is_active=False)
    assert await _closed_with(ticket=ticket) == CLOSE_UNAUTHENTICATED


async def test_password_change_invalidates_the_session_for_websockets() -> None:
    alice, key = await _user_and_session("alice")

    def change_password() -> None:
        alice.set_password("a-different-password-123")
        alice.save()

    await sync_to_async(change_password)()
    assert await _closed_with(session_key=key) == CLOSE_UNAUTHENTICATED


def test_credentials_are_read_from_query_and_cookie() -> None:
    scope = {
        "query_string": b"ticket=abc&x=1",
        "headers": [(b"cookie", b"other=1; sessionid=key123")],
    }
    assert credentials_from_scope(scope) == Credentials(ticket="abc", session_key="key123")
    assert credentials_from_scope({"query_string": b"", "headers": []}) == Credentials(None, None)
