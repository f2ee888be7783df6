"""The JS client (clients/js/) passes its Node tests against the real services.

``node --test`` runs in clients/js with the live endpoints in its
environment (see clients/js/test-support/live.js): ``WS_URL`` (the ws
service's ``/ws/``), ``WEB_URL`` (the web service) and ``TEST_USERS`` (JSON:
users created here, with their passwords; the Node tests log in through the
real login form, connect with the session cookie or a ticket, publish over
WebSocket and HTTP, and log out), plus ``CAPPED_WS_URL`` and
``REPLAY_MAX_MESSAGES`` for a second ws service with a small replay limit
(tests/clients/node_harness.py). Node test files with a harness of their own
(an optional feature's, ``test_js_client_<name>.py``) run from there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.clients import node_harness
from tests.support.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_js_client_node_tests_pass_against_the_live_services(
    node_modules: Path,
    ws_server: DaphneServer,
    web_server: DaphneServer,
    capped_ws_server: DaphneServer,
) -> None:
    env = await node_harness.live_env(ws_server, web_server, capped_ws_server)
    await asyncio.to_thread(node_harness.run_node_tests, node_harness.node_test_files(), env)
