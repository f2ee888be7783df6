"""Closing WebSocket connections when their credentials stop being valid.

Logging out, deleting a session (admin, ``clearsessions``), changing a
password, deactivating a user (``is_active = False`` saved through the admin
or ``user.save()``) or deleting a user sends ``auth.revoked`` through the
channel layer. Every connection opened with that session (by cookie, or by a
ticket that session requested), or every connection of that user, on every
replica, then closes with 4401. The same events delete the outstanding
tickets of that session or user.

These are model signals: ``QuerySet.update()`` (and raw SQL) sends none, so
``User.objects.filter(...).update(is_active=False)`` closes no socket. After
such a bulk change call :func:`revoke_user` for each user it touched: new
handshakes re-check the user only once the ws service's cached entry for the
session has aged out (``WS_AUTH_CACHE_SECONDS``, ``ws_service.auth_cache``).

Each revocation first sets a *mark* in Redis (``<prefix>:revoked:<group>``,
on the group's shard, for :data:`REVOKED_MARK_SECONDS`), then sends the
event. A ws handshake checks the marks of its session and user groups after
joining them, in the same pipelined round trip, on each group's shard
(:func:`marks_by_shard`, ``ws_service.admission``): a revocation either left its mark before
that check, or its event reaches the connection, which is already a member.
So neither a handshake racing a revocation nor a cached session ever outlives
the revocation, even before the event has been delivered.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model, user_logged_out
from django.contrib.sessions.models import Session
from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.http import HttpRequest

from shared.groups import user_group
from shared.tickets import delete_session_tickets, delete_user_tickets
from shared.topics import session_group

logger = logging.getLogger("shared.revocation")

REVOKED_EVENT = "auth.revoked"
# Longer than any cached session may serve handshakes (WS_AUTH_CACHE_SECONDS is at most 600).
REVOKED_MARK_SECONDS = 610


def revoked_mark(layer: Any, group: str) -> str:
    """The Redis key marking ``group`` as revoked (on the group's shard of ``layer``)."""
    return f"{layer.prefix}:revoked:{group}"


def _marks_redis(layer: Any) -> bool:
    """Whether ``layer`` is a Redis layer that can hold marks (a stock in-memory layer cannot)."""
    return hasattr(layer, "connection") and hasattr(layer, "consistent_hash")


async def _mark_and_send(layer: Any, group: str, reason: str) -> None:
    if _marks_redis(layer):
        connection = layer.connection(layer.consistent_hash(group))
        await connection.set(revoked_mark(layer, group), "1", ex=REVOKED_MARK_SECONDS)
    await layer.group_send(group, {"type": REVOKED_EVENT, "reason": reason})


def marks_by_shard(layer: Any, groups: list[str]) -> dict[int, list[str]]:
    """The revocation marks of ``groups``, by the layer shard holding them (none for a layer without marks).

    A handshake checks them (``EXISTS``) after joining the groups, on the same
    shard connection, in the same pipeline (``ws_service.admission``).
    """
    if not _marks_redis(layer):
        return {}
    by_shard: dict[int, list[str]] = {}
    for group in groups:
        by_shard.setdefault(layer.consistent_hash(group), []).append(revoked_mark(layer, group))
    return by_shard


def _revoke(group: str, reason: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(_mark_and_send)(layer, group, reason)
    except Exception as exc:  # logout must succeed even when the channel layer is down
        logger.error("could not revoke WebSocket connections of %s: %s", group, exc)


def revoke_session(session_key: str, reason: str = "session ended") -> None:
    _revoke(session_group(session_key), reason)


def revoke_user(user_id: int, reason: str) -> None:
    _revoke(user_group(user_id), reason)


def _on_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session_key = request.session.session_key
    if session_key:
        delete_session_tickets(session_key)
        revoke_session(session_key, "logged out")


def _on_session_deleted(sender: Any, instance: Session, **kwargs: Any) -> None:
    session_key = instance.session_key
    delete_session_tickets(session_key)
    # After the commit, like the user's revocations: a delete that is rolled back closes no socket.
    transaction.on_commit(lambda: revoke_session(session_key))


def _revocation_reason(instance: Any) -> str:
    """Why saving ``instance`` (an existing user) ends its sockets, or "" if it does not."""
    if instance._state.adding:
        return ""
    # set_password() keeps the raw password in _password until the next save.
    if getattr(instance, "_password", None) is not None:
        return "password changed"
    if not getattr(instance, "is_active", True):
        return "account deactivated"
    return ""


def _note_revocation(sender: Any, instance: Any, **kwargs: Any) -> None:
    instance._revoke_sockets = _revocation_reason(instance)


def _on_user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    reason = getattr(instance, "_revoke_sockets", "")
    if reason:
        instance._revoke_sockets = ""
        user_id = instance.pk
        delete_user_tickets(user_id)
        transaction.on_commit(lambda: revoke_user(user_id, reason))


def _on_user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    user_id = instance.pk
    transaction.on_commit(lambda: revoke_user(user_id, "account deleted"))


def connect_signals() -> None:
    """Called from ``SharedConfig.ready()``."""
    user_model = get_user_model()
    user_logged_out.connect(_on_logout, dispatch_uid="ws-revoke-logout")
    post_delete.connect(_on_session_deleted, sender=Session, dispatch_uid="ws-revoke-session")
    pre_save.connect(_note_revocation, sender=user_model, dispatch_uid="ws-revoke-password-pre")
    post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="ws-revoke-password-post")
    post_delete.connect(_on_user_deleted, sender=user_model, dispatch_uid="ws-revoke-user-deleted")
