"""Behind the proxy, on both ws servers: the per-address handshake limit and the forwarded scheme.

A ws service with ``WS_PROXY_HEADERS=1`` (as in compose and k8s) and a small
handshake limit. Each test claims its own client address through
``X-Forwarded-For``, which is what the limit counts by.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.live import open_ws, page_origin, recv_json
from tests.support.servers import DaphneServer
from tests.support.users import make_user, session_key_for
from ws_service.protocol import CLOSE_TOO_MANY_HANDSHAKES, CLOSE_UNAUTHENTICATED

pytestmark = pytest.mark.django_db(transaction=True)

BURST = 3


@pytest.fixture(scope="module")
def proxied_ws(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    with DaphneServer.running_ws(
        service_env,
        logs_dir / f"proxied-ws-{ws_server_kind}.log",
        ws_server_kind,
        WS_PROXY_HEADERS="1",
        WS_HANDSHAKES_PER_ADDRESS_PER_SECOND="0.05",  # one more every 20 s: none during a test
        WS_HANDSHAKE_BURST_PER_ADDRESS=str(BURST),
    ) as server:
        yield server


async def _close_code(server: DaphneServer, headers: dict[str, str], **options: str | None) -> int:
    ws = await open_ws(server.ws_url, headers=headers, **options)  # type: ignore[arg-type]
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_one_address_gets_its_burst_then_4029(proxied_ws: DaphneServer) -> None:
    flooder = {"X-Forwarded-For": "203.0.113.50"}
    codes = [await _close_code(proxied_ws, flooder) for _ in range(BURST + 2)]
    assert codes == [CLOSE_UNAUTHENTICATED] * BURST + [CLOSE_TOO_MANY_HANDSHAKES] * 2


async def test_the_limit_refuses_before_authentication(proxied_ws: DaphneServer) -> None:
    """Over the limit even a valid session gets 4029: nothing past the limit ran."""
    key = await sync_to_async(lambda: session_key_for(make_user("flo")))()
    address = {"X-Forwarded-For": "203.0.113.51"}
    for _ in range(BURST):
        assert await _close_code(proxied_ws, address) == CLOSE_UNAUTHENTICATED
    assert await _close_code(proxied_ws, address, cookie=f"sessionid={key}") == CLOSE_TOO_MANY_HANDSHAKES
    other = {"X-Forwarded-For": "203.0.113.52"}
    ws = await open_ws(proxied_ws.ws_url, headers=other, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["type"] == "welcome"
    await ws.close()


async def test_the_forwarded_https_scheme_makes_the_https_origin_the_own_origin(proxied_ws: DaphneServer) -> None:
    """Behind a TLS-terminating proxy the page is https://host: trusted only with X-Forwarded-Proto https."""
    https_origin = page_origin(proxied_ws.ws_url).replace("http://", "https://")
    tls = {"X-Forwarded-For": "203.0.113.53", "X-Forwarded-Proto": "https"}
    assert await _close_code(proxied_ws, tls, origin=https_origin) == CLOSE_UNAUTHENTICATED
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(proxied_ws.ws_url, headers=tls)  # the http origin is foreign to an https request
    assert refused.value.response.status_code == 403
    plain = {"X-Forwarded-For": "203.0.113.54", "X-Forwarded-Proto": "http"}
    with pytest.raises(InvalidStatus) as refused:
        await open_ws(proxied_ws.ws_url, headers=plain, origin=https_origin)
    assert refused.value.response.status_code == 403
