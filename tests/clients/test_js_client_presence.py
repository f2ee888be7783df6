"""The JS client's presence calls (clients/js/test/presence.test.js) against the real services.

Deleted with the presence feature; the other Node tests run from
tests/clients/test_js_client.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from shared import presence
from shared.presence import PresenceEntry
from shared.redis_client import get_redis
from tests.clients import node_harness
from tests.support.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

# Users in the crowd topic: at ~130 bytes each, more than one 64 KiB frame holds.
CROWD_SIZE = 700


@pytest.fixture
async def crowd_topic(settings: SettingsWrapper) -> AsyncIterator[str]:
    """A topic with more users than one 64 KiB presence frame holds, live for the whole node run."""
    settings.PRESENCE_TTL_SECONDS = 3600  # the entries outlive the run without a refresh
    topic = f"room.js-crowd-{uuid.uuid4().hex[:8]}"
    entries = [PresenceEntry(topic, f"jscrowd{i}", 940_000 + i, f"{i:04d}" + "j" * 100) for i in range(CROWD_SIZE)]
    for entry in entries:
        await presence.join(entry)
    yield topic
    for entry in entries:
        await presence.leave(entry)
    await get_redis().aclose()


async def test_js_client_presence_tests_pass_against_the_live_services(
    node_modules: Path,
    ws_server: DaphneServer,
    web_server: DaphneServer,
    capped_ws_server: DaphneServer,
    crowd_topic: str,
) -> None:
    env = await node_harness.live_env(
        ws_server, web_server, capped_ws_server, CROWD_TOPIC=crowd_topic, CROWD_SIZE=str(CROWD_SIZE)
    )
    await asyncio.to_thread(node_harness.run_node_tests, node_harness.node_test_files("presence"), env)
