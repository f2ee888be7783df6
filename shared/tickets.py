"""One-time WebSocket tickets.

A browser cannot set headers on a WebSocket handshake, and a cross-site
connection may not carry the session cookie, so the web service hands out a
short-lived ticket (``POST /api/ws-ticket``) that the client passes as
``?ticket=`` once. Tickets are random 256-bit tokens; the database keeps only
their SHA-256 digest, bound to one user with an expiry. Redeeming locks and
deletes the row in one transaction, so a ticket works at most once even under
concurrent replays.

A ticket requested by a logged-in session remembers that session's key (the
session table holds the same key), and redeeming it checks that the session
still authenticates the ticket's user (``ws_service.auth``): a ticket issued
before a logout, a session expiry or deletion, or a password change is
refused. Logout and password change also delete outstanding tickets
(``shared.revocation``).

A string that cannot be a ticket (:func:`well_formed_ticket`) is refused
without touching the database.
"""

from __future__ import annotations

import hashlib
import re
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

# What secrets.token_urlsafe(TICKET_BYTES) returns: 43 characters of base64url, no padding.
TICKET_BYTES = 32
TICKET_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")


def well_formed_ticket(ticket: str) -> bool:
    """Whether ``ticket`` has the shape of an issued ticket (checked before any query)."""
    return TICKET_FORMAT.fullmatch(ticket) is not None


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RedeemedTicket:
    """Who a valid ticket authenticates, and the session that asked for it."""

    user_id: int
    session_group: str
    #: The key of the session that requested the ticket ("" when issued without one).
    session_key: str = ""


def issue_ticket(user: AbstractBaseUser, session_key: str | None = None) -> tuple[str, int]:
    """A new ticket for ``user`` (requested from ``session_key``) and its lifetime in seconds."""
    ttl: int = settings.WS_TICKET_TTL_SECONDS
    now = timezone.now()
    WsTicket.objects.filter(expires_at__lte=now).delete()
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    WsTicket.objects.create(
        digest=_digest(ticket),
        user_id=user.pk,
        expires_at=now + timedelta(seconds=ttl),
        session_group=session_group(session_key) if session_key else "",
        session_key=session_key or "",
    )
    return ticket, ttl


def redeem_ticket(ticket: str) -> RedeemedTicket | None:
    """The ticket's user (and session group), consuming the ticket; ``None`` if invalid.

    Unknown, forged, expired and already-used tickets all give ``None``;
    malformed ones without a query.
    """
    if not well_formed_ticket(ticket):
        return None
    with transaction.atomic():
        row = WsTicket.objects.select_for_update().filter(digest=_digest(ticket)).first()
        if row is None:
            return None
        row.delete()
    if row.expires_at <= timezone.now():
        return None
    return RedeemedTicket(user_id=int(row.user_id), session_group=row.session_group, session_key=row.session_key)


def delete_session_tickets(session_key: str) -> int:
    """Delete the outstanding tickets requested by one session (logout); how many there were."""
    deleted, _ = WsTicket.objects.filter(session_key=session_key).delete()
    return deleted


def delete_user_tickets(user_id: int) -> int:
    """Delete every outstanding ticket of one user (password change, deactivation)."""
    deleted, _ = WsTicket.objects.filter(user_id=user_id).delete()
    return deleted
