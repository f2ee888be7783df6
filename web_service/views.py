"""HTML pages of the web service."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

FAVICON = "web_service/favicon.svg"


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The demo page for logged-in users: rooms, live messages and who is here."""
    return render(request, "web_service/home.html", {"ws_public_url": settings.WS_PUBLIC_URL})


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers ask for on pages without ``<link rel="icon">``: the static SVG icon.

    A temporary redirect (cached for a day), so a new icon's hashed static name is found after a deploy.
    """
    response = HttpResponseRedirect(static(FAVICON))
    patch_cache_control(response, public=True, max_age=86400)
    return response
