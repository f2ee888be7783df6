"""Presence across two real ws processes (replicas): it spans them, and a crashed replica's users disappear.

Deleted with the presence feature (docs/presence.md). Frames are validated
against docs/asyncapi.yaml.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_topics_across_replicas import _subscribe, _user_socket
from tests.support.live import recv_type, send_json
from tests.support.servers import DaphneServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PRESENCE_TTL = 6  # seconds; the default is 20


@pytest.fixture(scope="module")
def replicas(service_env: dict[str, str], django_db_setup: None, logs_dir: Path) -> Iterator[list[DaphneServer]]:
    with DaphneServer.running_replicas(
        service_env, logs_dir, "presence-replica", 2, PRESENCE_TTL_SECONDS=str(PRESENCE_TTL)
    ) as servers:
        yield servers


async def test_presence_spans_replicas_and_a_crashed_replica_disappears(replicas: list[DaphneServer]) -> None:
    frank, _ = await _user_socket(replicas[0], "frank")
    grace, grace_id = await _user_socket(replicas[1], "grace")
    await _subscribe(frank, "room.crash")
    await _subscribe(grace, "room.crash")
    joined = await recv_type(frank, "presence_diff")
    while joined["joined"] != [{"id": grace_id, "username": "grace"}]:
        joined = await recv_type(frank, "presence_diff")
    await send_json(frank, {"type": "presence", "topic": "room.crash"})
    assert [u["username"] for u in (await recv_type(frank, "presence"))["users"]] == ["frank", "grace"]

    crashed_at = time.monotonic()
    replicas[1].kill()
    left = await recv_type(frank, "presence_diff", wait=30)
    elapsed = time.monotonic() - crashed_at
    assert left["left"] == [{"id": grace_id, "username": "grace"}]
    # Expiry (TTL after the last refresh) plus one sweep period (TTL/3), plus slack.
    assert elapsed <= PRESENCE_TTL * 4 / 3 + 1, elapsed
    await send_json(frank, {"type": "presence", "topic": "room.crash"})
    assert [u["username"] for u in (await recv_type(frank, "presence"))["users"]] == ["frank"]
    await frank.close()
    replicas[1].start()
