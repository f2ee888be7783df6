"""A ws service with a small replay limit, for the clients' replay-continuation tests; the JS client's node_modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import DaphneServer

# WS_REPLAY_MAX_MESSAGES of the capped server: a replay of more comes in parts (more_history).
CAPPED_REPLAY_MESSAGES = 5


@pytest.fixture(scope="session")
def capped_ws_server(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    """The ws service on each server, replaying at most ``CAPPED_REPLAY_MESSAGES`` per subscribe."""
    env = {**service_env, "WS_SERVER": ws_server_kind, "WS_REPLAY_MAX_MESSAGES": str(CAPPED_REPLAY_MESSAGES)}
    server = DaphneServer.ws(env, logs_dir / f"ws-capped-{ws_server_kind}.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """clients/js/node_modules for the Node tests (tests/clients/node_harness.py)."""
    from tests.clients.node_harness import node_modules as installed  # here: node_harness imports this module

    return installed()
