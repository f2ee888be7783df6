"""JSON API of the web service."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from shared.current_user import get_current_user
from shared.tickets import issue_ticket


def _not_authenticated() -> JsonResponse:
    return JsonResponse({"error": "not_authenticated", "detail": "Log in first."}, status=401)


@never_cache
@require_POST
def ws_ticket(request: HttpRequest) -> JsonResponse:
    """``POST /api/ws-ticket``: a one-time WebSocket ticket for the logged-in user.

    CSRF-protected like any session-authenticated POST.
    """
    user = request.user
    if not user.is_authenticated:
        return _not_authenticated()
    ticket, expires_in = issue_ticket(user)
    return JsonResponse({"ticket": ticket, "expires_in": expires_in})


@never_cache
@require_GET
async def whoami(request: HttpRequest) -> JsonResponse:
    """``GET /api/whoami``: the user as published in the current-user ContextVar."""
    user = get_current_user()
    if user is None or not user.is_authenticated:
        return _not_authenticated()
    return JsonResponse({"user": {"id": user.pk, "username": user.get_username()}})
