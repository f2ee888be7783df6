"""Origin validation at the WebSocket handshake: scheme, host and port must match exactly."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from tests.support.communicators import receive_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.origin import (
    VERDICT_CACHE_SIZE,
    Origin,
    cached_origin_allowed,
    origin_allowed,
    own_origin,
    parse_origin,
)

TRUSTED = ["https://app.example.com", "https://*.trusted.example", "http://*.dev.example:8080"]
# The handshake's own origin in the rule table: Host localhost:8000 over plain ws.
OWN = Origin("http", "localhost", 8000)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, False),
        ("null", False),
        ("NULL", False),
        ("", False),
        ("https://evil.example", False),
        ("http://localhost.evil.example:8000", False),
        ("file://", False),
        ("chrome-extension://abc", False),
        ("http://localhost:notaport", False),
        # the handshake's own origin, and near misses (issue #11, F5)
        ("http://localhost:8000", True),
        ("HTTP://LOCALHOST:8000", True),
        ("http://localhost:9", False),
        ("http://localhost", False),
        ("https://localhost:8000", False),
        ("http://127.0.0.1:8000", False),
        ("http://web", False),
        ("http://user@localhost:8000", False),
        ("http://localhost:8000/path", False),
        # CSRF_TRUSTED_ORIGINS: exact, with default ports equal whether written or not
        ("https://app.example.com", True),
        ("https://app.example.com:443", True),
        ("https://app.example.com:8443", False),
        ("http://app.example.com", False),
        ("https://sub.app.example.com", False),
        # Django's scheme://*.domain wildcard: the domain and its subdomains, same scheme and port
        ("https://a.trusted.example", True),
        ("https://a.b.trusted.example", True),
        ("https://trusted.example", True),
        ("http://a.trusted.example", False),
        ("https://a.trusted.example:8443", False),
        ("https://trusted.example.evil", False),
        ("https://eviltrusted.example", False),
        ("http://x.dev.example:8080", True),
        ("http://x.dev.example", False),
    ],
)
def test_origin_rules(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, OWN, TRUSTED) is allowed


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"headers": [(b"host", b"localhost:8000")]}, Origin("http", "localhost", 8000)),
        ({"headers": [(b"host", b"example.com")], "scheme": "wss"}, Origin("https", "example.com", 443)),
        ({"headers": [(b"host", b"example.com")], "scheme": "ws"}, Origin("http", "example.com", 80)),
        ({"headers": [(b"host", b"[::1]:8001")]}, Origin("http", "::1", 8001)),
        ({"headers": []}, None),
    ],
)
def test_own_origin_is_the_host_with_the_request_scheme(scope: dict[str, object], expected: Origin | None) -> None:
    assert own_origin(scope) == expected


def test_a_forwarded_proto_header_alone_never_sets_the_scheme() -> None:
    """Only the launcher's trusted-proxy middleware turns X-Forwarded-Proto into the scope's scheme."""
    scope = {"headers": [(b"host", b"example.com"), (b"x-forwarded-proto", b"https")]}
    assert own_origin(scope) == Origin("http", "example.com", 80)
    assert own_origin({**scope, "scheme": "wss"}) == Origin("https", "example.com", 443)


def test_parse_origin_makes_default_ports_explicit() -> None:
    assert parse_origin("http://a.example") == parse_origin("http://a.example:80") == Origin("http", "a.example", 80)
    assert parse_origin("https://a.example") == Origin("https", "a.example", 443)


@pytest.mark.parametrize(
    "origin", [None, "null", "https://evil.example", "http://localhost:9", "https://localhost:8000"]
)
async def test_refused_origins_never_reach_the_consumer(origin: str | None) -> None:
    communicator = ws_communicator(origin=origin)
    connected, _ = await communicator.connect()
    assert connected is False


async def _session_key() -> str:
    return await sync_to_async(lambda: session_key_for(make_user("alice")))()


async def _welcomed(origin: str, key: str) -> bool:
    communicator = ws_communicator(origin=origin, session_key=key)
    connected, _ = await communicator.connect()
    if not connected:
        return False
    welcomed: bool = (await receive_message(communicator))["type"] == "welcome"
    await communicator.disconnect()
    return welcomed


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["http://localhost:8000", "http://trusted.example:8443"])
async def test_allowed_origins_connect(origin: str) -> None:
    assert await _welcomed(origin, await _session_key())


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "origin", ["http://localhost:9", "https://localhost:8000", "http://web", "https://evil.example"]
)
async def test_a_wildcard_allowed_hosts_trusts_no_foreign_origin(origin: str) -> None:
    key = await _session_key()
    with override_settings(ALLOWED_HOSTS=["*"]):
        assert not await _welcomed(origin, key)
        assert await _welcomed("http://localhost:8000", key)


@pytest.mark.django_db(transaction=True)
async def test_a_changed_trusted_origins_is_never_answered_from_a_remembered_verdict() -> None:
    """Verdicts are remembered per process, keyed by the settings too: a new CSRF_TRUSTED_ORIGINS decides afresh."""
    key = await _session_key()
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://moved.example"]):
        assert await _welcomed("https://moved.example", key)
    with override_settings(CSRF_TRUSTED_ORIGINS=[]):
        assert not await _welcomed("https://moved.example", key)


def test_remembered_origin_verdicts_are_bounded() -> None:
    """A client sending a new Origin on every handshake cannot grow the process's memory."""
    for index in range(VERDICT_CACHE_SIZE + 100):
        assert not cached_origin_allowed(f"https://o{index}.example", "http", "localhost:8000", ())
    info = cached_origin_allowed.cache_info()
    assert info.maxsize == VERDICT_CACHE_SIZE
    assert info.currsize <= VERDICT_CACHE_SIZE
