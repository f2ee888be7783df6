"""Storing, replaying and delivering topic messages: one path for WebSocket and HTTP.

A message's wire id is its per-topic sequence number, taken by
``Message.save()`` with an upsert on the topic's
:class:`~shared.models.TopicSequence` row, whose lock is held until the
message commits. So within a topic, ids are contiguous and
commit in increasing order. A replay of ``id > since`` therefore never has a
gap that a later commit would fill, and a consumer that sees ``id > last + 1``
knows a message is still in flight on the channel layer and fetches it from
the database (see ``ws_service.subscriptions``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from shared.current_user import get_current_user
from shared.models import Message, TopicSequence
from shared.push import timed_group_send
from shared.topics import topic_group

TOPIC_MESSAGE_EVENT = "topic.message"


class MessageTextError(ValueError):
    """Message text that is empty, not a string, too long, or holds a NUL character."""


def validate_text(text: object) -> str:
    """``text`` when it can be stored as a message; else :class:`MessageTextError`.

    PostgreSQL text cannot hold NUL (``\\u0000``) nor lone surrogates: refused
    here, they are the client's ``bad_message`` instead of a database error
    reported as ``unavailable`` (or a crash).
    """
    limit: int = settings.MESSAGE_MAX_LENGTH
    if not isinstance(text, str) or not text.strip():
        raise MessageTextError('"text" must be a non-empty string')
    if len(text) > limit:
        raise MessageTextError(f'"text" is longer than {limit} characters')
    if "\x00" in text:
        raise MessageTextError('"text" must not contain the NUL character (\\u0000)')
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageTextError('"text" holds a lone surrogate (invalid Unicode)') from None
    return text


def message_payload(message: Message, author_username: str) -> dict[str, Any]:
    """The ``message`` frame clients receive."""
    return {
        "type": "message",
        "topic": message.topic,
        "id": message.seq,
        "author": {"id": message.author_id, "username": author_username},
        "text": message.text,
        "created_at": message.created_at.isoformat(),
    }


def store_message(topic: str, text: str) -> dict[str, Any]:
    """Store a message by the current user (sync ORM code); its wire payload.

    The author comes from the current-user ContextVar via the model mixin,
    never from the caller.
    """
    user = get_current_user()
    message = Message.objects.create(topic=topic, text=text)
    username = user.get_username() if user is not None else ""
    return message_payload(message, username)


REPLAY_PAGE_SIZE = 500


def messages_after(topic: str, since: int, until: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored messages of ``topic`` with ``since < id <= until``, oldest first, at most ``limit``."""
    query = Message.objects.filter(topic=topic, seq__gt=since).select_related("author").order_by("seq")
    if until is not None:
        query = query.filter(seq__lte=until)
    if limit is not None:
        query = query[:limit]
    return [message_payload(m, m.author.get_username()) for m in query]


def last_id(topic: str) -> int:
    """The id of the newest message ever published to ``topic`` (0 if none)."""
    return TopicSequence.objects.filter(topic=topic).values_list("last_seq", flat=True).first() or 0


async def deliver(payload: dict[str, Any]) -> None:
    """Send a stored message to every subscriber of its topic on every replica (timed, see shared.push)."""
    await timed_group_send(
        topic_group(payload["topic"]), {"type": TOPIC_MESSAGE_EVENT, "message": payload}, event="topic_message"
    )
