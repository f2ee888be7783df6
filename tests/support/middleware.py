"""A downstream middleware that reads the current user, in both modes.

Used by the seed-regression test: under ASGI it runs on the event loop, so
reading a lazy user there would raise SynchronousOnlyOperation.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from shared.current_user import get_current_user
from web_service.dual_mode import DualModeMiddleware

SEEN_HEADER = "X-Seen-User"


def _seen(response: HttpResponse) -> HttpResponse:
    user = get_current_user()
    response[SEEN_HEADER] = "<unset>" if user is None else (user.get_username() or "<anonymous>")
    return response


class ReadsCurrentUserMiddleware(DualModeMiddleware):
    def handle(self, request: HttpRequest) -> HttpResponse:
        return _seen(self.get_response(request))

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        return _seen(await self.get_response(request))
