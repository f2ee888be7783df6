"""One-time WebSocket tickets.

A browser cannot set headers on a WebSocket handshake, and a cross-site
connection may not carry the session cookie, so the web service hands out a
short-lived ticket (``POST /api/ws-ticket``) that the client passes as
``?ticket=`` once. Tickets are random 256-bit tokens; the database keeps only
their SHA-256 digest, bound to one user with an expiry. Redeeming locks and
deletes the row in one transaction, so a ticket works at most once even under
concurrent replays.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from shared.models import WsTicket
from shared.topics import session_group

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

MAX_TICKET_LENGTH = 128


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RedeemedTicket:
    """Who a valid ticket authenticates, and the session that asked for it."""

    user_id: int
    session_group: str


def issue_ticket(user: AbstractBaseUser, session_key: str | None = None) -> tuple[str, int]:
    """A new ticket for ``user`` (requested from ``session_key``) and its lifetime in seconds."""
    ttl: int = settings.WS_TICKET_TTL_SECONDS
    now = timezone.now()
    WsTicket.objects.filter(expires_at__lte=now).delete()
    ticket = secrets.token_urlsafe(32)
    WsTicket.objects.create(
        digest=_digest(ticket),
        user_id=user.pk,
        expires_at=now + timedelta(seconds=ttl),
        session_group=session_group(session_key) if session_key else "",
    )
    return ticket, ttl


def redeem_ticket(ticket: str) -> RedeemedTicket | None:
    """The ticket's user (and session group), consuming the ticket; ``None`` if invalid.

    Unknown, forged, expired and already-used tickets all give ``None``.
    """
    if not ticket or len(ticket) > MAX_TICKET_LENGTH:
        return None
    with transaction.atomic():
        row = WsTicket.objects.select_for_update().filter(digest=_digest(ticket)).first()
        if row is None:
            return None
        row.delete()
    if row.expires_at <= timezone.now():
        return None
    return RedeemedTicket(user_id=int(row.user_id), session_group=row.session_group)
