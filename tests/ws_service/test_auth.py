"""Session-cookie and ticket authentication of WebSocket handshakes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from shared.models import WsTicket
from shared.tickets import issue_ticket
from tests.support.communicators import receive_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.auth import Credentials, Resolution, credentials_from_scope, plausible, resolve
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


# -- junk credentials cost no query (issue #11 F8) -------------------------------------------

JUNK_SESSION_KEYS = ["not-a-session", "x" * 33, "A" * 32, "../../etc/passwd", "abc", "0" * 31, "é" * 32]
JUNK_TICKETS = ["forged", "A" * 42, "A" * 44, "a" * 5000, "A" * 42 + "=", "A" * 42 + "/"]


def _queries_to_resolve(credentials: Credentials) -> tuple[int, Resolution]:
    """Statements sent to the database, by any thread, while resolving (they run on the auth threads)."""
    statements: list[str] = []
    original = CursorWrapper.execute

    def counted(self: CursorWrapper, sql: str, *args: Any, **kwargs: Any) -> Any:
        statements.append(sql)
        return original(self, sql, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", counted)
        resolution = async_to_sync(resolve)(credentials)
    return len([sql for sql in statements if "application_name" not in sql]), resolution


@pytest.mark.parametrize("session_key", JUNK_SESSION_KEYS)
def test_a_malformed_session_key_costs_no_query(session_key: str) -> None:
    count, resolution = _queries_to_resolve(Credentials(ticket=None, session_key=session_key))
    assert (count, resolution.user.is_authenticated) == (0, False)


@pytest.mark.parametrize("ticket", JUNK_TICKETS)
def test_a_malformed_ticket_costs_no_query_even_beside_a_valid_cookie(ticket: str) -> None:
    key = session_key_for(make_user("alice"))
    count, resolution = _queries_to_resolve(Credentials(ticket=ticket, session_key=key))
    assert (count, resolution.user.is_authenticated) == (0, False)


def test_well_formed_credentials_are_looked_up() -> None:
    """The counting sees the ORM hop: well-formed but unknown credentials do cost queries."""
    assert _queries_to_resolve(Credentials(ticket=None, session_key="a" * 32))[0] >= 1
    assert _queries_to_resolve(Credentials(ticket="A" * 43, session_key=None))[0] >= 1
    alice = make_user("alice")
    count, resolution = _queries_to_resolve(Credentials(ticket=None, session_key=session_key_for(alice)))
    assert count >= 1
    assert resolution.user.pk == alice.pk


def test_only_djangos_session_key_shape_is_plausible() -> None:
    assert plausible(Credentials(None, "abcdefghijklmnopqrstuvwxyz012345")).session_key is not None
    assert plausible(Credentials(None, "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345")).session_key is None
    assert plausible(Credentials("A" * 43, None)).ticket == "A" * 43
    assert plausible(Credentials("forged", None)).ticket == ""


async def test_ticket_of_a_logged_out_session_closes_4401() -> None:
    _, key = await _user_and_session("alice")
    ticket, _ = await sync_to_async(issue_ticket)(await User.objects.aget(username="alice"), key)
    await Session.objects.filter(session_key=key).adelete()
    assert await _closed_with(ticket=ticket) == CLOSE_UNAUTHENTICATED


async def test_ticket_of_a_live_session_authenticates() -> None:
    alice, key = await _user_and_session("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice, key)
    assert await _welcome_user(ticket=ticket) == {"id": alice.pk, "username": "alice"}


async def test_ticket_of_another_users_session_is_refused() -> None:
    """A ticket row naming one user and another user's session authenticates nobody."""
    alice = await sync_to_async(make_user)("alice")
    _, bobs_key = await _user_and_session("bob")
    ticket, _ = await sync_to_async(issue_ticket)(alice, bobs_key)
    assert await _closed_with(ticket=ticket) == CLOSE_UNAUTHENTICATED
