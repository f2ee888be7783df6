"""Every log record carries the user id and the request/connection id."""

from __future__ import annotations

import json
import logging
import re

from django.conf import settings
from django.contrib.auth.models import User

from shared.current_user import use_current_user
from shared.log_context import new_context_id, use_connection_id, use_context_id, use_request_id
from shared.log_filters import RequestContextFilter
from shared.log_format import JsonFormatter, TextFormatter


def _record() -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)


def test_fields_from_the_context() -> None:
    record = _record()
    with use_current_user(User(pk=7, username="u")), use_context_id("conn-1"):
        assert RequestContextFilter().filter(record)
    assert getattr(record, "user_id") == 7  # noqa: B009 - set dynamically by the filter
    assert getattr(record, "context_id") == "conn-1"  # noqa: B009


def test_placeholders_outside_a_request() -> None:
    record = _record()
    RequestContextFilter().filter(record)
    assert getattr(record, "user_id") == "-"  # noqa: B009 - set dynamically by the filter
    assert getattr(record, "context_id") == "-"  # noqa: B009


def test_configured_on_the_console_handler() -> None:
    handler = logging.getLogger().handlers[0]
    assert any(isinstance(f, RequestContextFilter) for f in handler.filters)
    formatted = handler.format(_record_through(handler))
    if settings.LOG_FORMAT == "text":
        assert isinstance(handler.formatter, TextFormatter)
        assert "[user=- ctx=-]" in formatted
        return
    # The default, and what the pytest environment gets: the production JSON format.
    assert isinstance(handler.formatter, JsonFormatter)
    entry = json.loads(formatted)
    assert entry["user_id"] is None
    assert entry.get("request_id", entry.get("connection_id", "missing")) is None


def test_context_kind_follows_the_id() -> None:
    record, other = _record(), _record()
    with use_request_id("req-1"):
        RequestContextFilter().filter(record)
    with use_connection_id("conn-1"):
        RequestContextFilter().filter(other)
    assert (getattr(record, "context_id"), getattr(record, "context_kind")) == ("req-1", "request")  # noqa: B009
    assert (getattr(other, "context_id"), getattr(other, "context_kind")) == ("conn-1", "connection")  # noqa: B009


def _record_through(handler: logging.Handler) -> logging.LogRecord:
    record = _record()
    for log_filter in handler.filters:
        assert isinstance(log_filter, logging.Filter)
        log_filter.filter(record)
    return record


def test_context_ids_are_32_hex_digits_and_never_repeat() -> None:
    """The form clients and logs see (``connection_id``, ``X-Request-ID``): 128 random bits in hex."""
    ids = {new_context_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
