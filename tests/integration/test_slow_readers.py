"""Slow readers on real Daphne and Uvicorn: the per-connection output budget (WS_MAX_PENDING_BYTES).

A raw client completes the handshake, asks for a lot (a long replay, or a
busy topic) and never reads. The server must abort that connection once its
unsent output passes the budget (1 MiB by default), count it as
``slow_consumer``, keep the process's memory within ``RSS_BOUND_MIB`` of where
it started, and keep another user's sockets open and receiving.

Before the budget, Daphne buffered every frame: one such client grew the
process by hundreds of MiB. Sizes are module constants: raise them to attack
harder.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from shared import messaging
from shared.current_user import use_current_user
from tests.support.live import open_ws, recv_json, recv_type, send_json
from tests.support.servers import DaphneServer
from tests.support.slow_reader import SlowReader
from tests.support.users import make_user, session_key_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# 4,000 three-byte characters: 12 KB of UTF-8 per message frame.
TEXT = "€" * 4000
HISTORY = 400  # 4.8 MB per replay: nearly 5 budgets
REPLAYS = 3  # subscribes with since=0 on the slow socket
# The kernel takes up to tcp_wmem max (4 MiB on Linux) of a socket's output before the server buffers any.
BUSY = 700  # live messages on a busy topic: 8.4 MB
VICTIM_SOCKETS = 2
# RSS growth allowed during one attack (the budget is 1 MiB per connection; the rest is Python's
# own churn: ORM rows, encoded frames, allocator arenas). README: "Slow readers".
RSS_BOUND_MIB = 24.0
ABORT_WAIT_SECONDS = 30.0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def _slow_consumer_aborts(server: DaphneServer) -> float:
    text = httpx.get(server.metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ws_connection_attempts_total" and sample.labels.get("outcome") == "slow_consumer":
                return float(sample.value)
    return 0.0


async def _aborted(server: DaphneServer, before: float) -> bool:
    deadline = time.monotonic() + ABORT_WAIT_SECONDS
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_slow_consumer_aborts, server) > before:
            return True
        await asyncio.sleep(0.2)
    return False


def _users(prefix: str) -> tuple[str, str, Any]:
    attacker = make_user(f"{prefix}-attacker")
    victim = make_user(f"{prefix}-victim")
    return session_key_for(attacker), session_key_for(victim), attacker


def _store(user: Any, topic: str, count: int) -> list[dict[str, Any]]:
    with use_current_user(user):
        return [messaging.store_message(topic, TEXT) for _ in range(count)]


async def _victims(server: DaphneServer, key: str, topic: str) -> list[ClientConnection]:
    sockets = [await open_ws(server.ws_url, cookie=f"sessionid={key}") for _ in range(VICTIM_SOCKETS)]
    for ws in sockets:
        assert (await recv_json(ws))["type"] == "welcome"
        await send_json(ws, {"type": "subscribe", "topic": topic})
        await recv_type(ws, "subscribed")
    return sockets


async def _victims_still_receive(sockets: list[ClientConnection], user: Any, topic: str) -> None:
    payload = (await sync_to_async(_store)(user, topic, 1))[0]
    await messaging.deliver(payload)
    for ws in sockets:
        got = await recv_type(ws, "message", wait=10)
        assert got["id"] == payload["id"]


async def test_a_slow_reader_of_long_replays_is_aborted_and_memory_stays_bounded(ws_server: DaphneServer) -> None:
    assert ws_server.process is not None
    prefix = f"replay-{ws_server.env['WS_SERVER']}"
    attacker_key, victim_key, attacker = await sync_to_async(_users)(prefix)
    await sync_to_async(_store)(attacker, f"room.{prefix}", HISTORY)
    victims = await _victims(ws_server, victim_key, f"room.{prefix}-victim")
    aborts_before = await asyncio.to_thread(_slow_consumer_aborts, ws_server)
    rss_before = _rss_mib(ws_server.process.pid)
    slow = await asyncio.to_thread(SlowReader, ws_server.port, attacker_key)
    try:
        for _ in range(REPLAYS):
            slow.send_json({"type": "subscribe", "topic": f"room.{prefix}", "since": 0})
        aborted = await _aborted(ws_server, aborts_before)
        rss_after = _rss_mib(ws_server.process.pid)
        assert aborted, f"the slow reader was not aborted; RSS {rss_before:.1f} -> {rss_after:.1f} MiB"
        assert await asyncio.to_thread(slow.closed_by_server, 10)
        await _victims_still_receive(victims, attacker, f"room.{prefix}-victim")
    finally:
        slow.close()
        await asyncio.gather(*(ws.close() for ws in victims))
    print(f"\n{ws_server.env['WS_SERVER']}: RSS {rss_before:.1f} -> {rss_after:.1f} MiB")
    assert rss_after - rss_before <= RSS_BOUND_MIB


async def test_a_slow_reader_of_a_busy_topic_is_aborted_and_others_get_everything(ws_server: DaphneServer) -> None:
    assert ws_server.process is not None
    prefix = f"busy-{ws_server.env['WS_SERVER']}"
    topic = f"room.{prefix}"
    attacker_key, victim_key, attacker = await sync_to_async(_users)(prefix)
    victims = await _victims(ws_server, victim_key, topic)
    aborts_before = await asyncio.to_thread(_slow_consumer_aborts, ws_server)
    rss_before = _rss_mib(ws_server.process.pid)
    slow = await asyncio.to_thread(SlowReader, ws_server.port, attacker_key)

    async def read_all(ws: ClientConnection) -> list[int]:
        ids: list[int] = []
        while len(ids) < BUSY:
            frame = await recv_json(ws, 30)
            if frame["type"] == "message":
                ids.append(frame["id"])
        return ids

    try:
        slow.send_json({"type": "subscribe", "topic": topic})
        await asyncio.sleep(0.5)  # the subscribe is handled before the first publish
        readers = [asyncio.create_task(read_all(ws)) for ws in victims]
        stored = await sync_to_async(_store)(attacker, topic, BUSY)
        for payload in stored:
            await messaging.deliver(payload)
        aborted = await _aborted(ws_server, aborts_before)
        rss_after = _rss_mib(ws_server.process.pid)
        assert aborted, f"the slow reader was not aborted; RSS {rss_before:.1f} -> {rss_after:.1f} MiB"
        received = await asyncio.wait_for(asyncio.gather(*readers), 60)
        assert all(ids == [payload["id"] for payload in stored] for ids in received)
        assert await asyncio.to_thread(slow.closed_by_server, 10)
    finally:
        slow.close()
        await asyncio.gather(*(ws.close() for ws in victims))
    print(f"\n{ws_server.env['WS_SERVER']}: RSS {rss_before:.1f} -> {rss_after:.1f} MiB")
    assert rss_after - rss_before <= RSS_BOUND_MIB


async def test_a_reader_at_full_speed_gets_a_replay_many_budgets_long(ws_server: DaphneServer) -> None:
    """Backpressure, not an abort, for a client that reads: 400 messages of 12 KB replayed twice (about 9 budgets).

    Daphne writes a whole replay page before the loop flushes any of it, so
    without waiting for room its unsent output passes the budget and even a
    fast reader is aborted as a slow consumer.
    """
    prefix = f"fast-{ws_server.env['WS_SERVER']}"
    reader_key, _, author = await sync_to_async(_users)(prefix)
    stored = await sync_to_async(_store)(author, f"room.{prefix}", HISTORY)
    aborts_before = await asyncio.to_thread(_slow_consumer_aborts, ws_server)
    ws = await open_ws(ws_server.ws_url, cookie=f"sessionid={reader_key}")
    try:
        assert (await recv_json(ws))["type"] == "welcome"
        for _ in range(2):
            await send_json(ws, {"type": "unsubscribe", "topic": f"room.{prefix}"})
            await send_json(ws, {"type": "subscribe", "topic": f"room.{prefix}", "since": 0})
            ids: list[int] = []
            while len(ids) < len(stored):
                frame = await recv_json(ws, 30)
                if frame["type"] == "message":
                    ids.append(frame["id"])
            assert ids == [payload["id"] for payload in stored]
        await send_json(ws, {"type": "ping"})
        assert (await recv_type(ws, "pong", wait=10))["type"] == "pong"
    finally:
        await ws.close()
    assert await asyncio.to_thread(_slow_consumer_aborts, ws_server) == aborts_before
