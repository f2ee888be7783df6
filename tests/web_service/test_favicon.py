"""The favicon: a static SVG linked from every page, and ``/favicon.ico`` for clients that ask for it anyway."""

from __future__ import annotations

import pytest
from django.templatetags.static import static
from django.test import Client

from web_service.views import FAVICON


def test_favicon_ico_redirects_to_the_static_icon() -> None:
    # No django_db mark: answering it touches no database (no session, no user).
    response = Client().get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == static(FAVICON)
    assert "max-age=86400" in response["Cache-Control"]
    assert Client().head("/favicon.ico").status_code == 302


def test_favicon_ico_refuses_other_methods() -> None:
    assert Client().post("/favicon.ico").status_code == 405


@pytest.mark.django_db
def test_the_static_icon_is_served_and_linked_from_the_login_page() -> None:
    client = Client()
    icon = client.get(static(FAVICON))  # WhiteNoise, before any view
    assert icon.status_code == 200
    assert icon["Content-Type"].startswith("image/svg+xml")
    assert b"".join(icon.streaming_content).startswith(b"<svg")  # type: ignore[attr-defined]
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert f'<link rel="icon" href="{static(FAVICON)}" type="image/svg+xml">' in page.content.decode()
