"""POST /api/ws-ticket."""

from __future__ import annotations

import pytest
from django.test import Client

from shared.tickets import redeem_ticket
from tests.support.users import make_user

pytestmark = pytest.mark.django_db


def test_logged_in_user_gets_a_ticket_bound_to_them() -> None:
    alice = make_user("alice")
    client = Client()
    client.force_login(alice)
    response = client.post("/api/ws-ticket")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"ticket", "expires_in"}
    assert 0 < body["expires_in"] <= 60
    assert "no-store" in response["Cache-Control"]
    redeemed = redeem_ticket(body["ticket"])
    assert redeemed is not None
    assert redeemed.user_id == alice.pk
    assert redeemed.session_group.startswith("session.")


def test_anonymous_gets_401_with_a_message() -> None:
    response = Client().post("/api/ws-ticket")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_get_is_not_allowed() -> None:
    client = Client()
    client.force_login(make_user("alice"))
    assert client.get("/api/ws-ticket").status_code == 405


def test_csrf_is_enforced() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    assert client.post("/api/ws-ticket").status_code == 403
    client.get("/accounts/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    assert client.post("/api/ws-ticket", headers={"X-CSRFToken": token}).status_code == 200
