"""A base for HTTP middleware that works under WSGI (sync) and ASGI (async)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

GetResponse = Callable[[HttpRequest], Any]


class DualModeMiddleware:
    """Declares both capabilities and dispatches to :meth:`handle` or :meth:`ahandle`.

    Django passes an async ``get_response`` under ASGI when every middleware
    below is async-capable; then ``__call__`` returns the coroutine of
    :meth:`ahandle` and no thread hop happens. Subclasses implement both.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self.ahandle(request)
        return self.handle(request)

    def handle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError
