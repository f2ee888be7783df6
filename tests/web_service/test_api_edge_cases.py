"""Web API edge cases: deep JSON, NUL and lone surrogates in text, oversize staff notifications."""

from __future__ import annotations

import pytest
from django.conf import settings

from shared.models import Message
from tests.support.users import client_for, make_user, post_json

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("url", ["/api/topics/room.deep/messages", "/api/users/{pk}/notify"])
def test_json_nested_past_the_parser_limit_is_400_not_500(url: str) -> None:
    admin = make_user("admin", is_staff=True)
    deep = "[" * 100_000 + "]" * 100_000  # valid JSON, far too deep for the parser; under the body size cap
    response = client_for(admin).post(url.format(pk=admin.pk), data=deep, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] in ("bad_json", "bad_message")


@pytest.mark.parametrize(
    ("text", "detail_word"),
    [("nul \x00 inside", "NUL"), ("lone \ud800 surrogate", "surrogate")],
)
def test_text_postgres_cannot_store_is_bad_message_not_unavailable(text: str, detail_word: str) -> None:
    client = client_for(make_user("alice"))
    response = post_json(client, "/api/topics/room.nul/messages", {"text": text})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == "bad_message"
    assert detail_word in response.json()["detail"]
    assert Message.objects.count() == 0


def test_notification_over_the_outbound_frame_limit_is_413() -> None:
    admin, alice = make_user("admin", is_staff=True), make_user("alice")
    limit: int = settings.WS_MAX_MESSAGE_BYTES
    client = client_for(admin)
    big = post_json(client, f"/api/users/{alice.pk}/notify", {"text": "x", "data": {"blob": "é" * (limit // 2)}})
    assert big.status_code == 413, big.content[:300]  # under the limit in characters, over it in UTF-8 bytes
    assert big.json()["error"] == "too_large"
    assert str(limit) in big.json()["detail"]
    fits = post_json(client, f"/api/users/{alice.pk}/notify", {"text": "x", "data": {"blob": "y" * (limit // 2)}})
    assert fits.status_code == 202, fits.content[:300]
