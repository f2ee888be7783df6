"""docs/extending.md's worked example, live: the ``typing`` feature across two real ws replicas, on each server.

Every frame sent and received here is validated against docs/asyncapi.yaml.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection

from tests.support.live import open_ws, recv_json, recv_type, send_json
from tests.support.servers import DaphneServer
from tests.support.users import make_user, session_key_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 1.0  # WS_TYPING_INTERVAL_SECONDS of both replicas


@pytest.fixture(scope="module")
def replicas(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[list[DaphneServer]]:
    with DaphneServer.running_replicas(
        service_env,
        logs_dir,
        f"typing-{ws_server_kind}",
        2,
        WS_SERVER=ws_server_kind,
        WS_TYPING_INTERVAL_SECONDS=str(INTERVAL),
    ) as servers:
        yield servers


async def _socket(replica: DaphneServer, username: str) -> ClientConnection:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    ws = await open_ws(replica.ws_url, cookie=f"sessionid={key}")
    assert (await recv_json(ws))["type"] == "welcome"
    return ws


async def _subscribe(ws: ClientConnection, topic: str, since: int | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "subscribe", "topic": topic}
    if since is not None:
        frame["since"] = since
    await send_json(ws, frame)
    return await recv_type(ws, "subscribed")


async def _frames_until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every frame that arrives before the answer to a ping."""
    await send_json(ws, {"type": "ping"})
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while (frame := await recv_json(ws)) != {"type": "pong"}:
            frames.append(frame)
    return frames


async def test_typing_reaches_the_other_subscribers_on_every_replica_throttled_and_unstored(
    replicas: list[DaphneServer],
) -> None:
    topic = "room.typing"
    alice, carol = await _socket(replicas[0], "alice"), await _socket(replicas[0], "carol")
    bob = await _socket(replicas[1], "bob")
    outsider = await _socket(replicas[1], "dave")
    for ws in (alice, bob, carol):
        await _subscribe(ws, topic)
    for _ in range(5):  # a burst of keystrokes: one indicator
        await send_json(alice, {"type": "typing", "topic": topic})
    await asyncio.sleep(0.3)  # what the burst could send has crossed Redis by now
    for ws in (bob, carol):  # the other replica and the same one
        typing = [frame for frame in await _frames_until_pong(ws) if frame["type"] == "typing"]
        assert len(typing) == 1, typing
        assert (typing[0]["topic"], typing[0]["user"]["username"]) == (topic, "alice")
    assert [f for f in await _frames_until_pong(alice) if f["type"] == "typing"] == []  # not to the typist
    await asyncio.sleep(INTERVAL)
    await send_json(alice, {"type": "typing", "topic": topic})  # the interval passed: announced again
    assert (await recv_type(bob, "typing"))["user"]["username"] == "alice"
    # Not stored: a newcomer replaying the whole topic finds nothing.
    assert (await _subscribe(outsider, topic, since=0))["last_id"] == 0
    assert [f for f in await _frames_until_pong(outsider) if f["type"] in ("message", "typing")] == []
    await send_json(outsider, {"type": "typing", "topic": "room.elsewhere", "ref": "t1"})
    error = await recv_type(outsider, "error")
    assert (error["code"], error["ref"]) == ("not_subscribed", "t1")
    for ws in (alice, bob, carol, outsider):
        await ws.close()


def test_the_guide_shows_the_feature_module_as_it_is() -> None:
    guide = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    module = (ROOT / "ws_service" / "features" / "typing.py").read_text()
    assert module in blocks, "docs/extending.md must quote ws_service/features/typing.py verbatim"
