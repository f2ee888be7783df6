"""Presence frames that never exceed the outbound frame limit (``WS_MAX_MESSAGE_BYTES``).

A ``presence`` reply is one page of a topic's users, ordered by username then
id; when more remain, its ``next`` is the cursor to send back as ``after``. A
coalesced diff too large for one frame is split into several.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.conf import settings

from ws_service.protocol import ErrorCode, ProtocolError, encode

# A cursor is "<user id>|<username>" of the last user of the previous page.
MAX_CURSOR_LENGTH = 200
# Room left in every frame for its own keys and punctuation beyond what is measured.
FRAME_SLACK_BYTES = 64


def frame_limit() -> int:
    """The largest frame sent, in UTF-8 bytes."""
    limit: int = settings.WS_MAX_MESSAGE_BYTES
    return limit


def _size(value: Any) -> int:
    return len(encode(value).encode())


def cursor_of(user: dict[str, Any]) -> str:
    return f"{user['id']}|{user['username']}"


def parse_after(message: dict[str, Any]) -> tuple[str, int] | None:
    """The ``after`` cursor of a ``presence`` request as a sort key, or ``None`` for the first page."""
    after = message.get("after")
    if after is None:
        return None
    if isinstance(after, str) and len(after) <= MAX_CURSOR_LENGTH and "|" in after:
        user_id, username = after.split("|", 1)
        if user_id.isdigit():
            return (username, int(user_id))
    raise ProtocolError(ErrorCode.BAD_MESSAGE, '"after" must be the "next" of an earlier presence reply')


def presence_page(
    topic: str, users: list[dict[str, Any]], after: tuple[str, int] | None, *, diffs: bool
) -> dict[str, Any]:
    """The ``presence`` reply with the users after ``after`` that fit in one frame.

    ``users`` is sorted by (username, id). ``next`` is present only when more
    users remain; ``diffs`` is present (``false``) only when the topic is too
    large for ``presence_diff`` frames.
    """
    start = 0
    if after is not None:
        start = next((i for i, user in enumerate(users) if (user["username"], user["id"]) > after), len(users))
    frame: dict[str, Any] = {"type": "presence", "topic": topic, "users": []}
    if not diffs:
        frame["diffs"] = False
    budget = frame_limit() - _size(frame) - FRAME_SLACK_BYTES
    page: list[dict[str, Any]] = frame["users"]
    for user in users[start:]:
        cost = _size(user) + 1
        # Keep room for the "next" cursor, which is about one user long.
        if page and cost * 2 + len(',"next":') > budget:
            frame["next"] = cursor_of(page[-1])
            return frame
        page.append(user)
        budget -= cost
    return frame


def diff_frames(topic: str, joined: list[dict[str, Any]], left: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """One ``presence_diff`` frame, or several when the lists do not fit in one."""
    empty: dict[str, Any] = {"type": "presence_diff", "topic": topic, "joined": [], "left": []}
    room = frame_limit() - _size(empty) - FRAME_SLACK_BYTES
    frame: dict[str, Any] = {**empty, "joined": [], "left": []}
    budget = room
    for key, users in (("left", left), ("joined", joined)):
        for user in users:
            cost = _size(user) + 1
            if cost > budget and (frame["joined"] or frame["left"]):
                yield frame
                frame, budget = {**empty, "joined": [], "left": []}, room
            frame[key].append(user)
            budget -= cost
    if frame["joined"] or frame["left"]:
        yield frame
