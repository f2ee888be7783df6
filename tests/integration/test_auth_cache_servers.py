"""The session cache on both ws servers: a session's later handshakes are hits; a logout refuses at once.

Real Daphne or Uvicorn, the real web service's logout over HTTP, real
PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from tests.support.live import login, open_ws, recv_json, session_cookie
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user
from ws_service.protocol import CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)


def _cache_lookups(server: DaphneServer) -> dict[str, float]:
    text = httpx.get(server.metrics_url, timeout=5).text
    found = {"hit": 0.0, "miss": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ws_auth_cache_lookups_total":
                found[sample.labels["result"]] = float(sample.value)
    return found


async def test_a_cached_session_is_refused_right_after_logout(
    ws_server: DaphneServer, web_server: DaphneServer
) -> None:
    username = f"cachy-{ws_server.env.get('WS_SERVER', 'ws')}"
    await sync_to_async(make_user)(username)
    http = await login(web_server.http_url, username, PASSWORD)
    cookie = session_cookie(http)
    before = await asyncio.to_thread(_cache_lookups, ws_server)
    sockets = []
    for _ in range(3):  # one after the other: the first one's welcome means its session is cached
        sockets.append(await open_ws(ws_server.ws_url, cookie=cookie))
        assert (await recv_json(sockets[-1]))["type"] == "welcome"
    after = await asyncio.to_thread(_cache_lookups, ws_server)
    assert after["miss"] - before["miss"] == 1  # the first handshake read the database
    assert after["hit"] - before["hit"] == 2  # the others were served from the cache

    response = await http.post(
        "/accounts/logout/", headers={"X-CSRFToken": http.cookies["csrftoken"], "Origin": web_server.http_url}
    )
    assert response.status_code == 302
    await http.aclose()

    refused = await open_ws(ws_server.ws_url, cookie=cookie)
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(refused)  # the first frame: never a welcome
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_UNAUTHENTICATED
    for ws in sockets:
        await ws.close()
