"""Closing WebSocket connections when their credentials stop being valid.

Logging out, deleting a session (admin, ``clearsessions``) or changing a
password sends ``auth.revoked`` through the channel layer. Every connection
opened with that session (by cookie, or by a ticket that session requested),
or every connection of that user, on every replica, then closes with 4401.
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
from shared.topics import session_group

logger = logging.getLogger("shared.revocation")

REVOKED_EVENT = "auth.revoked"


def _revoke(group: str, reason: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": REVOKED_EVENT, "reason": reason})
    except Exception as exc:  # logout must succeed even when the channel layer is down
        logger.error("could not revoke WebSocket connections of %s: %s", group, exc)


def revoke_session(session_key: str, reason: str = "session ended") -> None:
    _revoke(session_group(session_key), reason)


def revoke_user(user_id: int, reason: str) -> None:
    _revoke(user_group(user_id), reason)


def _on_logout(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session_key = request.session.session_key
    if session_key:
        revoke_session(session_key, "logged out")


def _on_session_deleted(sender: Any, instance: Session, **kwargs: Any) -> None:
    revoke_session(instance.session_key)


def _note_password_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    # set_password() keeps the raw password in _password until the next save.
    instance._revoke_sockets = not instance._state.adding and getattr(instance, "_password", None) is not None


def _on_user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    if getattr(instance, "_revoke_sockets", False):
        instance._revoke_sockets = False
        user_id = instance.pk
        transaction.on_commit(lambda: revoke_user(user_id, "password changed"))


def connect_signals() -> None:
    """Called from ``SharedConfig.ready()``."""
    user_model = get_user_model()
    user_logged_out.connect(_on_logout, dispatch_uid="ws-revoke-logout")
    post_delete.connect(_on_session_deleted, sender=Session, dispatch_uid="ws-revoke-session")
    pre_save.connect(_note_password_change, sender=user_model, dispatch_uid="ws-revoke-password-pre")
    post_save.connect(_on_user_saved, sender=user_model, dispatch_uid="ws-revoke-password-post")
