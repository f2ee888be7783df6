"""A logging filter that stamps every record with who and what it is about."""

from __future__ import annotations

import logging

from shared.current_user import get_current_user_id
from shared.log_context import get_context_id


class RequestContextFilter(logging.Filter):
    """Adds ``user_id`` and ``context_id`` (request or connection id) to records.

    Both are ``"-"`` outside a request or connection. Reads ContextVars only:
    never the database, so it is safe from async code and from the database
    backend's own loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "user_id"):
            user_id = get_current_user_id()
            record.user_id = "-" if user_id is None else user_id
        if not hasattr(record, "context_id"):
            record.context_id = get_context_id() or "-"
        return True
