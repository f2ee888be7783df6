"""Readiness stays 200 while the ws process has open connections.

channels-redis serialises every ``receive`` of a process behind one lock that
the connections' own receives hold in turn (5 s blocking reads). A readiness
probe waiting on a channel of its own then timed out: 503 on a busy, healthy
replica. The probe now uses a channel those receives read for it.
"""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async

from tests.support.live import open_ws, recv_json
from tests.support.servers import DaphneServer
from tests.support.users import make_users, session_key_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_readyz_is_200_with_connections_open(ws_server: DaphneServer) -> None:
    users = await sync_to_async(make_users)("busy", 5)
    sockets = []
    try:
        for user in users:
            ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={await sync_to_async(session_key_for)(user)}")
            assert (await recv_json(ws))["type"] == "welcome"
            sockets.append(ws)
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(5):
                response = await client.get(f"{ws_server.http_url}/readyz")
                assert response.status_code == 200, response.text
    finally:
        for ws in sockets:
            await ws.close()
