"""The /ws/ wire protocol: frame parsing, error codes and close codes.

Every frame is a JSON text frame holding an object with a string ``type``.
Client mistakes produce an error frame and leave the connection open.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# Close codes (RFC 6455 private range 4000-4999 for application codes).
CLOSE_SERVICE_RESTART = 1012
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# 1013 (RFC 6455 "try again later") cannot be sent through Daphne, which only
# accepts 1000 and 3000-4999, so the application range mirrors it.
CLOSE_TRY_AGAIN_LATER = 4013
# Over the per-user connection limit (WS_MAX_CONNECTIONS_PER_USER).
CLOSE_TOO_MANY_CONNECTIONS = 4429
# More unsent output than WS_MAX_PENDING_BYTES (a client that does not read): the server
# aborts the socket (the client sees 1006); the application's disconnect carries this code.
CLOSE_SLOW_CONSUMER = 4408
# Over the per-address handshake rate (WS_HANDSHAKES_PER_ADDRESS_PER_SECOND): back off, retry.
CLOSE_TOO_MANY_HANDSHAKES = 4029
# RFC 6455 codes for abuse (sustained flooding) and an oversize message.
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009

MAX_REF_LENGTH = 64


class ErrorCode(StrEnum):
    """The ``code`` of an error frame."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    BAD_TOPIC = "bad_topic"
    FORBIDDEN = "forbidden"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    UNAVAILABLE = "unavailable"
    QUOTA_EXCEEDED = "quota_exceeded"
    INTERNAL = "internal"


@dataclass(frozen=True)  # no slots: an exception with slots breaks contextmanager's re-raise
class ProtocolError(Exception):
    """A client mistake, reported to the client as an error frame."""

    code: ErrorCode
    detail: str


def parse_frame(
    text_data: str | None,
    bytes_data: bytes | None,
    *,
    max_depth: int | None = None,
    max_string_length: int | None = None,
) -> dict[str, Any]:
    """The message object of a frame; raises :class:`ProtocolError` on a bad one.

    Nesting deeper than ``max_depth`` or a string (key or value) longer than
    ``max_string_length`` is ``bad_message``; both default to the settings
    ``WS_MAX_JSON_DEPTH`` and ``WS_MAX_STRING_LENGTH``. JSON too deep for the
    parser itself is ``bad_json``, like any other unparsable frame.
    """
    if text_data is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "binary frames are not supported: send JSON text frames")
    message = loads(text_data)
    depth, length = json_limits()
    if max_depth is not None:
        depth = max_depth
    if max_string_length is not None:
        length = max_string_length
    if not within_limits_by_text(text_data, max_depth=depth, max_string_length=length):
        check_json_limits(message, max_depth=depth, max_string_length=length)
    if type(message) is not dict:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "a message must be a JSON object")
    if type(message.get("type")) is not str:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, 'a message needs a string "type"')
    return message


def loads(text: str) -> Any:
    """The JSON value of ``text``; raises ``bad_json`` when it is not JSON.

    orjson parses (about six times faster than the standard library on a
    small frame). What it refuses, the standard library's parser decides:
    escaped lone surrogates, ``NaN``, numbers out of a double's range and
    nesting over orjson's 1,024 levels are then parsed exactly as before
    (and a lone surrogate is refused as ``bad_message`` by the limits check),
    so no frame changes its error code. The one difference: an integer over
    64 bits becomes a float.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_JSON, "the frame is not valid JSON") from None


@functools.cache
def json_limits() -> tuple[int, int]:
    """``(WS_MAX_JSON_DEPTH, WS_MAX_STRING_LENGTH)``, read once (and again after a setting changes in tests)."""
    return settings.WS_MAX_JSON_DEPTH, settings.WS_MAX_STRING_LENGTH


@receiver(setting_changed)
def _json_limits_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("WS_MAX_JSON_DEPTH", "WS_MAX_STRING_LENGTH"):
        json_limits.cache_clear()


def within_limits_by_text(text: str, *, max_depth: int, max_string_length: int) -> bool:
    """Whether the text of a frame alone shows that its JSON keeps both limits (no walk of the parsed value).

    True for the common small frame: ASCII without ``\\u`` escapes (so it cannot
    hold a lone surrogate), no longer than ``max_string_length`` (so none of its
    strings is), and with no more brackets than ``max_depth`` (nesting needs one
    per level; brackets inside strings only make the bound looser). False means
    only "walk it": :func:`check_json_limits` decides.
    """
    return (
        len(text) <= max_string_length
        and text.isascii()
        and "\\u" not in text
        and text.count("{") + text.count("[") <= max_depth
    )


def check_json_limits(value: Any, *, max_depth: int, max_string_length: int) -> None:
    """Raise ``bad_message`` when a parsed JSON value nests or its strings run too far.

    Objects and arrays nest: the top-level one is depth 1, ``{"a": {"b": 1}}``
    is depth 2 (scalars add no level). Every key and every
    string value counts towards the string limit and must be valid Unicode.
    Iterative, so it cannot overflow the stack whatever the input.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list) and depth > max_depth:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"JSON nesting deeper than {max_depth} levels")
        if isinstance(item, str):
            _check_string(item, max_string_length)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, max_string_length)
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def _check_string(text: str, max_length: int) -> None:
    """A string must fit the length limit and be valid Unicode.

    JSON escapes can smuggle in lone surrogates (``"\\ud800"``), which cannot
    be encoded as UTF-8: echoed back in a frame or stored, they would fail far
    from here, so they are refused up front.
    """
    if len(text) > max_length:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"a string is longer than {max_length} characters")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "a string holds a lone surrogate (invalid Unicode)") from None


def optional_since(message: dict[str, Any]) -> int | None:
    """The ``since`` of a subscribe: absent/null, or an integer >= 0."""
    since = message.get("since")
    if since is None:
        return None
    if isinstance(since, bool) or not isinstance(since, int) or since < 0:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, '"since" must be an integer >= 0')
    return since


def optional_recent(message: dict[str, Any]) -> int | None:
    """The ``recent`` of a subscribe: absent/null, or an integer >= 0 (how many of the newest messages to replay)."""
    recent = message.get("recent")
    if recent is None:
        return None
    if isinstance(recent, bool) or not isinstance(recent, int) or recent < 0:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, '"recent" must be an integer >= 0')
    if message.get("since") is not None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, 'give "since" or "recent", not both')
    return recent


def optional_ref(message: dict[str, Any]) -> str | None:
    """The ``ref`` of a request, echoed by its reply and errors: absent/null, or a short string."""
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


# The standard encoder, for what orjson refuses; json.dumps with these options would build a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(message: dict[str, Any]) -> str:
    """A compact JSON text frame.

    orjson encodes (non-string keys become strings, as with the standard
    library); what it refuses (an integer over 64 bits, a lone surrogate)
    goes to the standard encoder, which decides as before.
    """
    try:
        return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return _ENCODER.encode(message)
