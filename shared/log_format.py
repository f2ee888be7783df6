"""Log formats: one JSON object per line (production), or readable text (development).

``LOG_FORMAT`` (settings) picks one for the console handler. Both expect the
fields :class:`shared.log_filters.RequestContextFilter` adds, and work
without them. Standard library only, and a formatter never raises: a value
it cannot serialise is written as its ``repr``.

A JSON line::

    {"timestamp": "2026-01-02T03:04:05.678Z", "level": "INFO", "service": "ws",
     "logger": "ws.consumer", "message": "subscribed", "user_id": 7,
     "connection_id": "9f0c…", "topic": "room.lobby"}

Query strings never reach the logs by design (access lines log the path
only); as a second line of defence both formats mask the value of any
``ticket=`` parameter that a message might still carry.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from shared.log_context import CONTEXT_KINDS, ContextKind, set_default_kind

LOG_FORMATS = ("json", "text")
_default_service = "django"

# Attributes every LogRecord has (plus what Formatter.format adds): never "extra" fields.
_STANDARD_ATTRIBUTES = frozenset(
    {
        *logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__,
        "message",
        "asctime",
    }
)
# Added by RequestContextFilter; written under their own names below.
_CONTEXT_ATTRIBUTES = frozenset({"user_id", "context_id", "context_kind"})
_TICKET_VALUE = re.compile(r"(ticket=)[^&\s\"']+", re.IGNORECASE)
_NONE = "-"


def set_process_identity(service: str, context_kind: ContextKind) -> None:
    """Name this process in logs (unless ``SERVICE_NAME`` is set) and say what its contexts are.

    Called by each service's ASGI entry point: ``("web", "request")`` and
    ``("ws", "connection")``.
    """
    global _default_service
    _default_service = service
    set_default_kind(context_kind)


# Launchers run as ``python -m <package>``: the package names the service.
_ENTRY_POINTS: dict[str, tuple[str, ContextKind]] = {
    "ws_service": ("ws", "connection"),
    "web_service": ("web", "request"),
}


def identify_process_from_entry_point() -> None:
    """:func:`set_process_identity` from ``python -m ws_service`` / ``python -m web_service``.

    Covers processes that never import an ASGI entry point, such as the ws
    launcher's worker supervisor; does nothing for any other ``__main__``.
    """
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    package = str(getattr(spec, "name", None) or "").partition(".")[0]
    identity = _ENTRY_POINTS.get(package)
    if identity is not None:
        set_process_identity(*identity)


def redact(text: str) -> str:
    """``text`` with the value of every ``ticket=`` parameter masked."""
    return _TICKET_VALUE.sub(r"\1[redacted]", text)


def _utc_timestamp(created: float) -> str:
    """RFC 3339, UTC, milliseconds: ``2026-01-02T03:04:05.678Z``."""
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string or args must not lose the record
        return f"{_safe_repr(record.msg)} % {_safe_repr(record.args)}"


def _is_json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return True


def _request_summary(request: Any) -> Any:
    """Django's ``extra={"request": ...}`` as ``"GET /path"``: its repr would include the query string."""
    method, path = getattr(request, "method", None), getattr(request, "path", None)
    if isinstance(method, str) and isinstance(path, str):
        return f"{method} {path}"
    return None


def _json_safe(value: Any) -> Any:
    """``value`` when ``json.dumps`` takes it as it is, else its ``repr``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return _safe_repr(value)
    return value


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _optional(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and value == _NONE) else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request/connection context of the record.

    Fields: ``timestamp``, ``level``, ``service``, ``logger``, ``message``,
    ``user_id`` (``null`` outside a request or connection) and
    ``request_id`` or ``connection_id`` (by the context's kind; ``null``
    outside one), then ``topic`` and any other JSON-safe ``extra`` fields
    (others are left out: a repr can hold anything, a query string included;
    Django's ``request`` extra becomes ``"METHOD /path"``), and
    ``exc_info`` / ``stack_info`` as strings.
    """

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service or None

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:  # never lose a record, never raise into the caller
            try:
                fallback = self._base(record, message=_safe_repr(getattr(record, "msg", None)))
                fallback["format_error"] = _safe_repr(exc)
                return json.dumps(fallback, ensure_ascii=False, default=_safe_repr)
            except Exception:
                return json.dumps({"level": "ERROR", "message": "unformattable log record"})

    def _base(self, record: logging.LogRecord, message: str) -> dict[str, Any]:
        kind = getattr(record, "context_kind", None)
        if kind not in CONTEXT_KINDS:
            kind = "request"
        return {
            "timestamp": _utc_timestamp(getattr(record, "created", 0.0)),
            "level": getattr(record, "levelname", "ERROR"),
            "service": self.service or _default_service,
            "logger": getattr(record, "name", "?"),
            "message": redact(message),
            "user_id": _json_safe(_optional(getattr(record, "user_id", None))),
            f"{kind}_id": _json_safe(_optional(getattr(record, "context_id", None))),
        }

    def _format(self, record: logging.LogRecord) -> str:
        entry = self._base(record, _message(record))
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRIBUTES or key in _CONTEXT_ATTRIBUTES or key in entry or key.startswith("_"):
                continue
            if key == "request":
                value = _request_summary(value)
            if _is_json_safe(value):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=_safe_repr)


class TextFormatter(logging.Formatter):
    """The development format: ``time level logger [user=… ctx=…] message``, ticket values masked."""

    DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s [user=%(user_id)s ctx=%(context_id)s] %(message)s"

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt or self.DEFAULT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        for name in ("user_id", "context_id"):
            if not hasattr(record, name):
                setattr(record, name, _NONE)
        try:
            text = super().format(record)
        except Exception as exc:
            text = f"{_safe_repr(record.msg)} (log format error: {_safe_repr(exc)})"
        topic = getattr(record, "topic", None)
        if topic is not None and "topic=" not in text:
            text = f"{text} [topic={topic}]"
        return redact(text)
