"""The subscribe storm's client side against the raw reference server (``bench.servers.raw``), a real process.

The reader must tell a socket's own ``subscribed`` reply, the storm's traffic
(counted by frame type) and the two measured publishes apart, and count a
socket that cannot subscribe as a failure.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from bench.infra import ServerProcess
from bench.storm_client import StormReader

TOPIC = "room.storm-test"


@pytest.fixture
def raw_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess("raw", [sys.executable, "-m", "bench.servers.raw", "--port", "{port}"], os.environ, tmp_path)
    server.start()
    try:
        server.wait_ready(30)
        yield server
    finally:
        server.stop()


async def _open(url: str) -> ClientConnection:
    ws = await connect(url, compression=None, proxy=None, open_timeout=10)
    assert '"welcome"' in str(await ws.recv(decode=True))
    return ws


def _publish(text: str) -> str:
    return json.dumps({"type": "publish", "topic": TOPIC, "text": text})


async def test_reader_counts_replies_storm_frames_and_measured_publishes_apart(raw_server: ServerProcess) -> None:
    sockets = [await _open(raw_server.ws_url) for _ in range(5)]
    await sockets[4].close()  # cannot subscribe: a failure, not a hang
    reader = StormReader(sockets, ("tag-after", "tag-quiet"))
    publisher = await _open(raw_server.ws_url)
    try:
        subscribed = await reader.subscribe(json.dumps({"type": "subscribe", "topic": TOPIC}), timeout=10)
        assert (subscribed["ok"], subscribed["failures"]) == (4, 1)
        assert subscribed["started"] <= subscribed["last"]
        await publisher.send(_publish("noise"))  # storm traffic: one untagged frame per subscriber
        await publisher.send(_publish("tag-after"))
        settled = await reader.settle("tag-after", quiet=0.3, timeout=10)
        await publisher.send(_publish("tag-quiet"))
        finished = await reader.finish("tag-quiet", timeout=10)
    finally:
        await reader.stop()
        for ws in [*sockets, publisher]:
            await ws.close()
    assert settled["quiet"] is True
    assert settled["counts"] == {"message": 4, "closed": 1}
    assert len(settled["times"]) == 4
    assert min(settled["times"]) >= subscribed["last"]
    assert len(finished["times"]) == 4
    assert min(finished["times"]) > max(settled["times"])
    assert finished["counts"] == settled["counts"]


async def test_settle_waits_out_the_quiet_period_and_reports_a_missing_delivery(raw_server: ServerProcess) -> None:
    sockets = [await _open(raw_server.ws_url) for _ in range(2)]
    reader = StormReader(sockets, ("never-published",))
    try:
        await reader.subscribe(json.dumps({"type": "subscribe", "topic": TOPIC}), timeout=10)
        settled = await reader.settle("never-published", quiet=0.2, timeout=0.6)
    finally:
        await reader.stop()
        for ws in sockets:
            await ws.close()
    assert settled["quiet"] is False
    assert settled["times"] == []
