"""A logging filter that stamps every record with who and what it is about."""

from __future__ import annotations

import logging

from shared.current_user import get_current_user_id
from shared.log_context import get_context_id, get_context_kind


class RequestContextFilter(logging.Filter):
    """Adds ``user_id``, ``context_id`` and ``context_kind`` to records.

    ``user_id`` and ``context_id`` (the request or connection id) are ``"-"``
    outside a request or connection; ``context_kind`` says which of the two
    the id is (``"request"`` or ``"connection"``), so the JSON format can name
    the field ``request_id`` or ``connection_id``. Reads ContextVars only:
    never the database, so it is safe from async code and from the database
    backend's own loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "user_id"):
            user_id = get_current_user_id()
            record.user_id = "-" if user_id is None else user_id
        if not hasattr(record, "context_id"):
            record.context_id = get_context_id() or "-"
        if not hasattr(record, "context_kind"):
            record.context_kind = get_context_kind()
        return True
