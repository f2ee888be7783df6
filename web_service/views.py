"""HTML pages of the web service."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The demo page for logged-in users: rooms, live messages and presence."""
    return render(request, "web_service/home.html", {"ws_public_url": settings.WS_PUBLIC_URL})
