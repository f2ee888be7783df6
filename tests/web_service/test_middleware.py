"""The HTTP middleware publishing the current user, under WSGI and ASGI."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import AsyncClient, Client, override_settings

from shared.current_user import get_current_user
from tests.support.middleware import SEEN_HEADER
from tests.support.users import make_user

pytestmark = pytest.mark.django_db

WITH_READER = [*settings.MIDDLEWARE, "tests.support.middleware.ReadsCurrentUserMiddleware"]


@override_settings(MIDDLEWARE=WITH_READER)
def test_downstream_middleware_reads_the_user_under_wsgi() -> None:
    client = Client()
    client.force_login(make_user("alice"))
    response = client.get("/api/whoami")
    assert response.status_code == 200
    assert response[SEEN_HEADER] == "alice"
    assert response.json() == {"user": {"id": response.json()["user"]["id"], "username": "alice"}}


@pytest.mark.django_db(transaction=True)
@override_settings(MIDDLEWARE=WITH_READER)
async def test_downstream_middleware_reads_the_user_under_asgi() -> None:
    alice = await make_user_async("alice")
    client = AsyncClient()
    await client.aforce_login(alice)
    response = await client.get("/api/whoami")
    assert response.status_code == 200
    assert response[SEEN_HEADER] == "alice"
    assert response.json()["user"] == {"id": alice.pk, "username": "alice"}
    assert get_current_user() is None  # reset after the request


async def make_user_async(username: str) -> User:
    return await sync_to_async(make_user)(username)


@override_settings(MIDDLEWARE=WITH_READER)
def test_anonymous_requests_publish_anonymous_user() -> None:
    response = Client().get("/api/whoami")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response[SEEN_HEADER] == "<anonymous>"


def test_request_id_is_echoed_and_validated() -> None:
    client = Client()
    kept = client.get("/api/whoami", headers={"X-Request-ID": "abc-123"})
    assert kept["X-Request-ID"] == "abc-123"
    replaced = client.get("/api/whoami", headers={"X-Request-ID": "bad id\nwith newline"})
    assert replaced["X-Request-ID"] != "bad id\nwith newline"
    assert len(replaced["X-Request-ID"]) == 32


def test_access_log_has_user_and_request_id_but_no_query_string(caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    alice = make_user("alice")
    client.force_login(alice)
    with caplog.at_level(logging.INFO, logger="web.access"):
        client.get("/api/whoami?ticket=secret-value", headers={"X-Request-ID": "req-42"})
    [record] = [r for r in caplog.records if r.name == "web.access"]
    assert "secret-value" not in record.getMessage()
    assert record.getMessage().startswith("GET /api/whoami 200")
    assert record.user_id == alice.pk  # type: ignore[attr-defined]
    assert record.context_id == "req-42"  # type: ignore[attr-defined]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def wsgi_server(transactional_db: None) -> Iterator[str]:
    """The real WSGI entry point (web_service.wsgi:application) on a wsgiref server."""
    from web_service.wsgi import application

    def app_closing_connections(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            return application(environ, start_response)
        finally:
            connections.close_all()  # the server thread's own connection, before the thread ends

    server: WSGIServer = make_server("127.0.0.1", 0, app_closing_connections, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_wsgi_entry_point_serves_health_and_the_current_user(wsgi_server: str) -> None:
    alice = make_user("alice")
    client = Client()
    client.force_login(alice)
    cookie = client.cookies["sessionid"].value
    assert httpx.get(f"{wsgi_server}/healthz").json() == {"status": "ok"}
    response = httpx.get(f"{wsgi_server}/api/whoami", cookies={"sessionid": cookie}, headers={"Host": "localhost"})
    assert response.status_code == 200
    assert response.json()["user"] == {"id": alice.pk, "username": "alice"}
