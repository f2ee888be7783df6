"""HTTP middleware publishing per-request context: request id, current user, access log.

Each class is declared both sync- and async-capable and does the right thing
in each mode, instead of relying on ``MiddlewareMixin`` (which claims to be
async-capable, so code that reads ``request.user`` in it under ASGI must not
touch the lazy user from the event loop). In async mode the user is resolved
with ``await request.auser()``; in sync mode with ``auth.get_user``; either
way the ContextVar holds a resolved object, never a lazy one.
"""

from __future__ import annotations

import logging
import re
import time

from django.contrib import auth
from django.http import HttpRequest, HttpResponse

from shared.current_user import use_current_user
from shared.log_context import new_context_id, use_request_id
from web_service.dual_mode import DualModeMiddleware

access_logger = logging.getLogger("web.access")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _request_id(request: HttpRequest) -> str:
    """The proxy's request id when it is well-formed, else a new one."""
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    return supplied if _VALID_REQUEST_ID.fullmatch(supplied) else new_context_id()


class RequestIdMiddleware(DualModeMiddleware):
    """Publishes the request id for log records and echoes it in the response."""

    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = _request_id(request)
        with use_request_id(request_id):
            response: HttpResponse = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        request_id = _request_id(request)
        with use_request_id(request_id):
            response: HttpResponse = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response


class CurrentUserMiddleware(DualModeMiddleware):
    """Publishes ``request.user`` in :mod:`shared.current_user` for the request.

    Must come after ``AuthenticationMiddleware``. Replaces the lazy
    ``request.user`` with the resolved user so later code reads it without a
    second query.
    """

    def handle(self, request: HttpRequest) -> HttpResponse:
        user = auth.get_user(request)
        request.user = user
        with use_current_user(user):
            response: HttpResponse = self.get_response(request)
        return response

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        user = await request.auser()
        request.user = user
        with use_current_user(user):
            response: HttpResponse = await self.get_response(request)
        return response


class AccessLogMiddleware(DualModeMiddleware):
    """One ``web.access`` line per request: method, path, status, duration.

    Logs ``request.path`` only, never the query string, so secrets passed in
    URLs stay out of logs. User and request id come from the log filter.
    """

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response: HttpResponse = self.get_response(request)
        self._log(request, response, started)
        return response

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response: HttpResponse = await self.get_response(request)
        self._log(request, response, started)
        return response

    @staticmethod
    def _log(request: HttpRequest, response: HttpResponse, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        # Structured fields for the JSON format; ``path`` never includes the query string.
        fields = {
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(elapsed_ms, 1),
        }
        access_logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status_code, elapsed_ms, extra=fields
        )
