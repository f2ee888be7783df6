"""One-time WebSocket tickets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from shared.models import WsTicket
from shared.tickets import issue_ticket, redeem_ticket
from tests.support.users import make_user

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
