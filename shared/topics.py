"""Topic names and who may use them: the one place for these rules.

* ``room.<slug>``: open to any authenticated user.
* ``user.<id>``: only the user with that id.

The same check guards every topic request (subscribe, publish, …), over
WebSocket and HTTP alike.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.current_user import UserLike

ROOM_TOPIC = re.compile(r"room\.[a-z0-9_-]{1,64}")
USER_TOPIC = re.compile(r"user\.([1-9][0-9]{0,17})")
MAX_TOPIC_LENGTH = 100


@dataclass(frozen=True)  # no slots: an exception with slots breaks contextmanager's re-raise
class TopicError(Exception):
    """A topic a client may not use; ``code`` is ``bad_topic`` or ``forbidden``."""

    code: str
    detail: str


def validate_topic(topic: object) -> str:
    """``topic`` if it is a well-formed topic name, else :class:`TopicError` ``bad_topic``."""
    if isinstance(topic, str) and (ROOM_TOPIC.fullmatch(topic) or USER_TOPIC.fullmatch(topic)):
        return topic
    raise TopicError("bad_topic", "topics are room.<slug> (a-z, 0-9, - and _, at most 64) or user.<id>")


def check_access(user: UserLike, topic: str) -> None:
    """Raise :class:`TopicError` ``forbidden`` unless ``user`` may use ``topic``."""
    if not user.is_authenticated:
        raise TopicError("forbidden", "log in first")
    match = USER_TOPIC.fullmatch(topic)
    if match is not None and int(match.group(1)) != user.pk:
        raise TopicError("forbidden", f"{topic} is private to its user")


def authorize(user: UserLike, topic: object) -> str:
    """The validated topic name, if ``user`` may use it."""
    name = validate_topic(topic)
    check_access(user, name)
    return name


def topic_group(topic: str) -> str:
    """The channel-layer group of a topic's subscribers (valid group-name characters)."""
    return f"topic.{topic}"


def session_group(session_key: str) -> str:
    """The group of every connection authenticated by one session (key hashed)."""
    return f"session.{hashlib.sha256(session_key.encode()).hexdigest()[:40]}"
