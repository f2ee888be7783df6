"""Both services under real Daphne: log in over HTTP, then connect over WebSocket."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.live import SAME_ORIGIN, fetch_ticket, login, open_ws, recv_json, send_json, session_cookie
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user
from ws_service.protocol import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)


async def _closed_code(
    ws_url: str, *, cookie: str | None = None, ticket: str | None = None, origin: str = SAME_ORIGIN
) -> int:
    ws = await open_ws(ws_url, cookie=cookie, ticket=ticket, origin=origin)
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_session_cookie_from_the_web_service_authenticates_on_the_ws_service(
    web_server: DaphneServer, ws_server: DaphneServer
) -> None:
    alice = await sync_to_async(make_user)("alice")
    client = await login(web_server.http_url, "alice", PASSWORD)
    ws = await open_ws(ws_server.ws_url, cookie=session_cookie(client))
    welcome = await recv_json(ws)
    assert welcome["type"] == "welcome"
    assert welcome["user"] == {"id": alice.pk, "username": "alice"}
    await send_json(ws, {"type": "whoami"})
    assert await recv_json(ws) == {"type": "whoami", "user": {"id": alice.pk, "username": "alice"}}
    await ws.close()
    await client.aclose()


async def test_ticket_connects_once_then_is_refused(web_server: DaphneServer, ws_server: DaphneServer) -> None:
    alice = await sync_to_async(make_user)("alice")
    client = await login(web_server.http_url, "alice", PASSWORD)
    body = await fetch_ticket(client)
    assert 0 < body["expires_in"] <= 60
    ws = await open_ws(ws_server.ws_url, ticket=body["ticket"])
    assert (await recv_json(ws))["user"]["id"] == alice.pk
    await ws.close()
    assert await _closed_code(ws_server.ws_url, ticket=body["ticket"]) == CLOSE_UNAUTHENTICATED
    assert await _closed_code(ws_server.ws_url, ticket="forged-ticket") == CLOSE_UNAUTHENTICATED
    await client.aclose()


async def test_no_credentials_closes_4401(ws_server: DaphneServer) -> None:
    assert await _closed_code(ws_server.ws_url) == CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize("origin", [None, "null", "https://evil.example"])
async def test_bad_origins_get_403_at_the_handshake(ws_server: DaphneServer, origin: str | None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(ws_server.ws_url, origin=origin)
    assert refused.value.response.status_code == 403


async def test_allowed_origin_reaches_authentication(ws_server: DaphneServer) -> None:
    assert await _closed_code(ws_server.ws_url, origin="http://trusted.example:8443") == CLOSE_UNAUTHENTICATED


async def test_logout_through_the_web_service_ends_the_session_for_new_sockets(
    web_server: DaphneServer, ws_server: DaphneServer
) -> None:
    await sync_to_async(make_user)("alice")
    client = await login(web_server.http_url, "alice", PASSWORD)
    cookie = session_cookie(client)
    response = await client.post(
        "/accounts/logout/", headers={"X-CSRFToken": client.cookies["csrftoken"], "Origin": web_server.http_url}
    )
    assert response.status_code == 302
    assert await _closed_code(ws_server.ws_url, cookie=cookie) == CLOSE_UNAUTHENTICATED
    await client.aclose()


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/readyz", 200), ("/", 404), ("/admin/", 404)])
def test_ws_service_http_side(ws_server: DaphneServer, path: str, status: int) -> None:
    assert httpx.get(f"{ws_server.http_url}{path}", timeout=5).status_code == status


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_web_service_probes(web_server: DaphneServer, path: str) -> None:
    response = httpx.get(f"{web_server.http_url}{path}", timeout=5)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_web_service_serves_collected_static_files(web_server: DaphneServer) -> None:
    response = httpx.get(f"{web_server.http_url}/static/admin/css/base.css", timeout=5)
    assert response.status_code == 200
    assert "text/css" in response.headers["content-type"]
