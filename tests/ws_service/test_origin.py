"""Origin validation at the WebSocket handshake."""

from __future__ import annotations

import pytest

from tests.support.communicators import receive_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.origin import origin_allowed

ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", ".example.org"]
TRUSTED = ["https://app.example.com", "https://*.trusted.example"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, False),
        ("null", False),
        ("NULL", False),
        ("", False),
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("file://", False),
        ("chrome-extension://abc", False),
        ("http://localhost:8000", True),
        ("http://127.0.0.1", True),
        ("http://[::1]:8000", True),
        ("https://sub.example.org", True),
        ("https://app.example.com", True),
        ("http://app.example.com", False),  # scheme differs from the trusted origin
        ("https://a.trusted.example", True),
        ("https://trusted.example.evil", False),
        ("http://localhost:notaport", False),
    ],
)
def test_origin_rules(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, ALLOWED_HOSTS, TRUSTED) is allowed


@pytest.mark.parametrize("origin", [None, "null", "https://evil.example"])
async def test_refused_origins_never_reach_the_consumer(origin: str | None) -> None:
    communicator = ws_communicator(origin=origin)
    connected, _ = await communicator.connect()
    assert connected is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["http://localhost:8000", "http://trusted.example:8443"])
async def test_allowed_origins_connect(origin: str) -> None:
    from asgiref.sync import sync_to_async

    key = await sync_to_async(lambda: session_key_for(make_user("alice")))()
    communicator = ws_communicator(origin=origin, session_key=key)
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    await communicator.disconnect()
