"""One-time WebSocket tickets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from shared.models import WsTicket
from shared.tickets import issue_ticket, redeem_ticket, well_formed_ticket
from tests.support.users import make_user, session_key_for

pytestmark = pytest.mark.django_db


def test_ticket_works_once_for_its_user() -> None:
    alice = make_user("alice")
    ticket, expires_in = issue_ticket(alice)
    assert 0 < expires_in <= 60
    redeemed = redeem_ticket(ticket)
    assert redeemed is not None
    assert redeemed.user_id == alice.pk
    assert redeem_ticket(ticket) is None


def test_expired_ticket_is_refused_and_consumed() -> None:
    alice = make_user("alice")
    ticket, _ = issue_ticket(alice)
    WsTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert redeem_ticket(ticket) is None
    assert WsTicket.objects.count() == 0


@pytest.mark.parametrize("forged", ["", "x", "A" * 43, "a" * 5000])
def test_forged_tickets_are_refused(forged: str) -> None:
    issue_ticket(make_user("alice"))
    assert redeem_ticket(forged) is None


def test_only_a_digest_is_stored() -> None:
    ticket, _ = issue_ticket(make_user("alice"))
    row = WsTicket.objects.get()
    assert ticket not in row.digest
    assert len(row.digest) == 64


def test_issuing_purges_expired_tickets() -> None:
    alice = make_user("alice")
    issue_ticket(alice)
    WsTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    issue_ticket(alice)
    assert WsTicket.objects.count() == 1


def test_issued_tickets_are_well_formed_and_junk_is_not() -> None:
    ticket, _ = issue_ticket(make_user("alice"))
    assert well_formed_ticket(ticket)
    for junk in ["", "x", "A" * 42, "A" * 44, "A" * 42 + "+", "A" * 42 + "="]:
        assert not well_formed_ticket(junk)


def test_a_ticket_remembers_its_session() -> None:
    alice = make_user("alice")
    key = session_key_for(alice)
    ticket, _ = issue_ticket(alice, key)
    redeemed = redeem_ticket(ticket)
    assert redeemed is not None
    assert redeemed.session_key == key


def _logged_in_client_with_ticket(username: str) -> Client:
    client = Client()
    client.force_login(make_user(username))
    assert client.post("/api/ws-ticket").status_code == 200
    return client


def test_logout_deletes_the_sessions_outstanding_tickets() -> None:
    alice = _logged_in_client_with_ticket("alice")
    _logged_in_client_with_ticket("bob")
    assert WsTicket.objects.count() == 2
    alice.post("/accounts/logout/")
    assert list(WsTicket.objects.values_list("user__username", flat=True)) == ["bob"]


@pytest.mark.parametrize("change", ["password", "deactivate"])
def test_password_change_and_deactivation_delete_the_users_tickets(change: str) -> None:
    _logged_in_client_with_ticket("alice")
    _logged_in_client_with_ticket("bob")
    alice = User.objects.get(username="alice")
    if change == "password":
        alice.set_password("a-new-password-9876")
    else:
        alice.is_active = False
    alice.save()
    assert list(WsTicket.objects.values_list("user__username", flat=True)) == ["bob"]


def test_other_saves_keep_the_users_tickets() -> None:
    _logged_in_client_with_ticket("alice")
    alice = User.objects.get(username="alice")
    alice.first_name = "Alice"
    alice.save()
    assert WsTicket.objects.count() == 1
