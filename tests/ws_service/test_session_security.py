"""No session fixation through the ws service, and tickets that work exactly once.

The ws service reads sessions and never writes them: a handshake with a
session cookie, a ticket, or an attacker-chosen session key leaves the
session table exactly as it was (keys, expiry dates, data), and no handshake
response ever carries ``Set-Cookie``. A ticket redeemed by many threads at
once against the real PostgreSQL authenticates exactly one of them.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import override_settings

from shared.models import WsTicket
from shared.tickets import RedeemedTicket, issue_ticket, redeem_ticket
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.protocol import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)

type SessionRows = list[tuple[str, datetime, str]]

# Well-formed session keys (32 of [a-z0-9]) and malformed ones an attacker could plant.
ATTACKER_KEYS = ["attackerchosensessionkey00000001", "fixated", "x" * 40, "../../etc/passwd", "0" * 32]


def _session_rows() -> SessionRows:
    """Every row of the session table: key, expiry and (signed) data."""
    return list(Session.objects.order_by("session_key").values_list("session_key", "expire_date", "session_data"))


async def _sessions() -> SessionRows:
    rows: SessionRows = await sync_to_async(_session_rows)()
    return rows


async def _logged_in(username: str) -> tuple[User, str]:
    user = await sync_to_async(make_user)(username)
    return user, await sync_to_async(session_key_for)(user)


def _set_cookie_headers(headers: list[tuple[bytes, bytes]] | None) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers or [] if name.lower() == b"set-cookie"]


async def _use_connection(communicator: WebsocketCommunicator) -> dict[str, object]:
    """Connect, expect ``welcome``, exercise it a little, disconnect; the welcomed user."""
    connected, _ = await communicator.connect()
    assert connected
    assert _set_cookie_headers(communicator.response_headers) == []
    welcome = await receive_message(communicator)
    assert welcome["type"] == "welcome", welcome
    await send_message(communicator, {"type": "whoami"})
    assert (await receive_message(communicator))["type"] == "whoami"
    await send_message(communicator, {"type": "ping"})
    assert (await receive_message(communicator))["type"] == "pong"
    await communicator.disconnect()
    user: dict[str, object] = welcome["user"]
    return user


async def _refused(communicator: WebsocketCommunicator) -> int:
    """Connect, expect an accept followed by a close; the close code."""
    connected, _ = await communicator.connect()
    assert connected
    assert _set_cookie_headers(communicator.response_headers) == []
    output = await communicator.receive_output(3)
    assert output["type"] == "websocket.close", output
    await communicator.wait()
    code: int = output["code"]
    return code


async def test_session_cookie_connection_leaves_the_session_untouched() -> None:
    alice, key = await _logged_in("alice")
    before = await _sessions()
    assert [row[0] for row in before] == [key]
    user = await _use_connection(ws_communicator(session_key=key))
    assert user == {"id": alice.pk, "username": "alice"}
    assert await _sessions() == before


async def test_ticket_connection_leaves_the_session_untouched() -> None:
    alice, key = await _logged_in("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice, key)
    before = await _sessions()
    assert await _use_connection(ws_communicator(ticket=ticket)) == {"id": alice.pk, "username": "alice"}
    assert await _sessions() == before


async def test_ticket_with_a_session_cookie_leaves_the_session_untouched() -> None:
    alice, key = await _logged_in("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice, key)
    before = await _sessions()
    assert await _use_connection(ws_communicator(ticket=ticket, session_key=key)) == {
        "id": alice.pk,
        "username": "alice",
    }
    assert await _sessions() == before


@pytest.mark.parametrize("attacker_key", ATTACKER_KEYS)
async def test_attacker_chosen_session_key_never_creates_a_session(attacker_key: str) -> None:
    _, victim_key = await _logged_in("alice")
    before = await _sessions()
    assert await _refused(ws_communicator(session_key=attacker_key)) == CLOSE_UNAUTHENTICATED
    assert await _sessions() == before
    assert not await Session.objects.filter(session_key=attacker_key).aexists()
    assert [row[0] for row in before] == [victim_key]


@pytest.mark.parametrize("attacker_key", ATTACKER_KEYS[:2])
async def test_attacker_chosen_session_key_beside_a_valid_ticket_creates_no_session(attacker_key: str) -> None:
    """A valid ticket authenticates; the planted cookie is neither adopted nor stored."""
    alice = await sync_to_async(make_user)("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice)
    before = await _sessions()
    user = await _use_connection(ws_communicator(ticket=ticket, session_key=attacker_key))
    assert user == {"id": alice.pk, "username": "alice"}
    assert await _sessions() == before == []


async def test_refused_handshakes_send_no_cookie() -> None:
    """A handshake refused before accept (foreign origin) gets a bare close: no headers at all."""
    _, key = await _logged_in("alice")
    communicator = ws_communicator(origin="https://evil.example", session_key=key)
    connected, _ = await communicator.connect()
    assert connected is False
    assert communicator.response_headers is None


async def test_secret_key_rotation_does_not_make_the_ws_service_write_sessions() -> None:
    alice, key = await _logged_in("alice")
    before = await _sessions()
    with override_settings(SECRET_KEY="rotated-" + "k" * 60, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert await _use_connection(ws_communicator(session_key=key)) == {"id": alice.pk, "username": "alice"}
    assert await _sessions() == before


async def test_a_stale_session_after_a_password_change_is_refused_without_being_deleted() -> None:
    alice, key = await _logged_in("alice")

    def change_password() -> None:
        alice.set_password("a-new-password-4242")
        alice.save()

    await sync_to_async(change_password)()
    before = await _sessions()
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_output(3))["code"] == CLOSE_UNAUTHENTICATED
    assert await _sessions() == before  # refused, but the web service's session row is untouched


def _redeem_in_thread(ticket: str, start: threading.Barrier) -> RedeemedTicket | None:
    """Redeem ``ticket`` on this thread's own database connection, all threads released together."""
    try:
        start.wait(timeout=10)
        return redeem_ticket(ticket)
    finally:
        connection.close()


def test_concurrent_redemption_of_one_ticket_succeeds_exactly_once() -> None:
    alice = make_user("alice")
    ticket, _ = issue_ticket(alice)
    threads = 10
    start = threading.Barrier(threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda _: _redeem_in_thread(ticket, start), range(threads)))
    winners = [result for result in results if result is not None]
    assert len(winners) == 1, results
    assert winners[0].user_id == alice.pk
    assert not WsTicket.objects.exists()


async def test_concurrent_handshakes_with_one_ticket_authenticate_exactly_once() -> None:
    alice = await sync_to_async(make_user)("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice)
    communicators = [ws_communicator(ticket=ticket) for _ in range(10)]
    accepted = await asyncio.gather(*(communicator.connect(timeout=10) for communicator in communicators))
    assert all(connected for connected, _ in accepted)
    first_frames = await asyncio.gather(*(communicator.receive_output(10) for communicator in communicators))
    welcomed = [frame for frame in first_frames if frame["type"] == "websocket.send"]
    closed = [frame for frame in first_frames if frame["type"] == "websocket.close"]
    assert len(welcomed) == 1, first_frames
    assert [frame["code"] for frame in closed] == [CLOSE_UNAUTHENTICATED] * 9
    for communicator in communicators:
        await communicator.disconnect()
