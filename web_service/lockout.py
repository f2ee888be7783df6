"""The response to a login that django-axes locked out (``AXES_LOCKOUT_CALLABLE``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def lockout_response(request: HttpRequest, *_: Any) -> HttpResponse:
    """429 with a plain message and ``Retry-After`` (the lock-out window), for the login page and the admin.

    Axes calls this with ``(request, original_response, credentials)`` or, in
    async mode, ``(request, credentials)``; neither is needed here.
    """
    seconds = int(settings.AXES_COOLOFF_TIME.total_seconds())
    response = HttpResponse(
        f"Too many failed logins for this username from your address: try again in {seconds // 60} minutes.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(seconds)
    return response
