"""The /ws/ wire protocol: frame parsing, error codes and close codes.

Every frame is a JSON text frame holding an object with a string ``type``.
Client mistakes produce an error frame and leave the connection open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# Close codes (RFC 6455 private range 4000-4999 for application codes).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# 1013 (RFC 6455 "try again later") cannot be sent through Daphne, which only
# accepts 1000 and 3000-4999, so the application range mirrors it.
CLOSE_TRY_AGAIN_LATER = 4013

MAX_REF_LENGTH = 64


class ErrorCode(StrEnum):
    """The ``code`` of an error frame."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    BAD_TOPIC = "bad_topic"
    FORBIDDEN = "forbidden"
    NOT_SUBSCRIBED = "not_subscribed"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class ProtocolError(Exception):
    """A client mistake, reported to the client as an error frame."""

    code: ErrorCode
    detail: str


def parse_frame(text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
    """The message object of a frame; raises :class:`ProtocolError` on a bad one."""
    if text_data is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "binary frames are not supported: send JSON text frames")
    try:
        message = json.loads(text_data)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_JSON, "the frame is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message must be a JSON object")
    if not isinstance(message.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, 'a message needs a string "type"')
    return message


def optional_since(message: dict[str, Any]) -> int | None:
    """The ``since`` of a subscribe: absent/null, or an integer >= 0."""
    since = message.get("since")
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, '"since" must be an integer >= 0')
    return since


def optional_ref(message: dict[str, Any]) -> str | None:
    """The ``ref`` of a publish, echoed in its ack: absent/null, or a short string."""
    ref = message.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str) or len(ref) > MAX_REF_LENGTH:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f'"ref" must be a string of at most {MAX_REF_LENGTH} characters')
    return ref


def error_frame(code: str, detail: str, request: dict[str, Any]) -> dict[str, Any]:
    """An error frame; it echoes the request's ``ref`` when that was a valid one."""
    frame: dict[str, Any] = {"type": "error", "code": code, "detail": detail}
    ref = request.get("ref")
    if isinstance(ref, str) and len(ref) <= MAX_REF_LENGTH:
        frame["ref"] = ref
    return frame


def encode(message: dict[str, Any]) -> str:
    """A compact JSON text frame."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
