"""Presence after a drain: the drained users leave the topic at once, a user still connected elsewhere stays.

The drain's cleanup is per process (``tests/integration/test_drain_cleanup.py``
for groups and slots); presence takes part through its drain hook, removing
this process's entries in one pipeline and announcing the leaves once.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from asgiref.sync import sync_to_async

from shared import presence
from tests.integration.test_drain_cleanup import TOPIC, _subscribed, draining_ws  # noqa: F401
from tests.support.live import server_close_code
from tests.support.servers import DaphneServer
from tests.support.users import make_users
from ws_service.protocol import CLOSE_SERVICE_RESTART

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONNECTIONS = 30
WAIT_SECONDS = 30


async def test_a_drain_removes_its_users_presence_and_keeps_one_present_elsewhere(
    draining_ws: DaphneServer,  # noqa: F811
    ws_server: DaphneServer,
    ws_server_kind: str,
) -> None:
    users = await sync_to_async(make_users)(f"presence-drain-{ws_server_kind}-", CONNECTIONS)
    sockets = [await _subscribed(draining_ws.ws_url, user) for user in users]
    staying = users[0]
    elsewhere = await _subscribed(ws_server.ws_url, staying)
    assert len(await presence.users(TOPIC)) == CONNECTIONS

    assert draining_ws.process is not None
    draining_ws.process.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*(server_close_code(ws, WAIT_SECONDS) for ws in sockets))
    returncode = await asyncio.to_thread(draining_ws.process.wait, WAIT_SECONDS)
    draining_ws.process = None

    assert codes == [CLOSE_SERVICE_RESTART] * CONNECTIONS
    assert returncode == 0
    # What another replica reads right after the old process exited, with no TTL to wait for.
    assert [u["username"] for u in await presence.users(TOPIC)] == [staying.username]
    await elsewhere.close()
