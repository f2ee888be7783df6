"""A client that sends faster than its consumer handles, on real Daphne and Uvicorn (WS_MAX_PENDING_FRAMES).

The attacker's consumer is kept busy (subscribes with ``since=0`` replaying a
long history, which the client reads) while the same socket sends
``FRAMES`` frames of ``FRAME_BYTES`` as fast as the socket takes them. The
server must stop reading that socket once ``WS_MAX_PENDING_FRAMES`` frames
wait unconsumed, so the client's sends block and the process stays within
``RSS_BOUND_MIB`` of where it started; the connection keeps working (every
frame is answered, then a ``whoami``), and another user's socket answers its
pings throughout.

Before the bound, Daphne queued every frame it read: this test grew the
process by hundreds of MiB. Uvicorn pauses reading after every message.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from shared import messaging
from shared.current_user import use_current_user
from tests.support.flooder import Flooder
from tests.support.live import open_ws, recv_json, recv_type, send_json
from tests.support.servers import DaphneServer
from tests.support.slow_reader import masked_text_frame
from tests.support.users import make_user, session_key_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FRAMES = 3000
# A ping padded to 60 KiB (under WS_MAX_MESSAGE_BYTES; each string under WS_MAX_STRING_LENGTH).
PAD = ["x" * 7700] * 8
HISTORY = 1000  # messages replayed per subscribe (WS_REPLAY_MAX_MESSAGES)
REPLAYS = 10  # subscribes with since=0 ahead of the flood: the consumer is busy replaying
# Under the default rate limit (40 frames of burst): the replays must outlast the flood's first seconds.
RATE_LIMITED_REPLAYS = 30
# 1 KB per replayed message: a replay page (500) stays under WS_MAX_PENDING_BYTES (Daphne writes it unyielding).
TEXT = "x" * 900
# Growth allowed while the flood runs: WS_MAX_PENDING_FRAMES (64) frames of 60 KiB are 4 MiB; the rest
# is the replays' own churn (ORM rows, encoded frames, allocator arenas). Unbounded, it was hundreds of MiB.
RSS_BOUND_MIB = 24.0
BLAST_SECONDS = 180.0
DRAIN_SECONDS = 120.0
SAMPLE_SECONDS = 0.02
# From the server's close frame to the end of its TCP connection: the client's close reply waits behind
# its own flood in the socket, and autobahn drops the connection after 1 s if unanswered; 2 s leaves room
# for a loaded machine (the suite runs in parallel workers) while an unbounded close would take minutes.
CLOSING_SECONDS = 2.0
# The rate limit out of the way: every flooded frame reaches the consumer.
UNLIMITED_RATE = {"WS_RATE_LIMIT_PER_SECOND": "1000000", "WS_RATE_LIMIT_BURST": "1000000"}
# With the bound far above the flood, Daphne queues it (measured: +100 to 150 MiB).
UNBOUNDED_GROWTH_MIB = 2 * RSS_BOUND_MIB


@pytest.fixture(scope="module")
def flood_server(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    """The ws service with the rate limit out of the way: every flooded frame reaches the consumer."""
    with DaphneServer.running_ws(
        service_env, logs_dir / f"flood-ws-{ws_server_kind}.log", ws_server_kind, **UNLIMITED_RATE
    ) as server:
        yield server


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


class PeakRss:
    """Samples a process's RSS every ``SAMPLE_SECONDS`` in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = _rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, _rss_mib(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def _inbound_pauses(server: DaphneServer) -> float:
    text = httpx.get(server.metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ws_inbound_pauses_total":
                return float(sample.value)
    return 0.0


def _users(prefix: str) -> tuple[str, str]:
    attacker = make_user(f"{prefix}-attacker")
    victim = make_user(f"{prefix}-victim")
    with use_current_user(attacker):
        for _ in range(HISTORY):
            messaging.store_message(f"room.{prefix}", TEXT)
    return session_key_for(attacker), session_key_for(victim)


@dataclass
class Flood:
    """What one flood against a busy consumer did."""

    sent: int
    longest_block: float
    rss_before: float
    peak: float
    answered: bool  # the whoami sent after the flood was answered
    flooder: Flooder

    @property
    def growth(self) -> float:
        return self.peak - self.rss_before

    def describe(self, kind: str) -> str:
        return (
            f"{kind}: {self.sent} frames sent, longest send blocked {self.longest_block:.2f} s, "
            f"RSS {self.rss_before:.1f} -> peak {self.peak:.1f} MiB (+{self.growth:.1f}), "
            f"replies {dict(self.flooder.types)}"
        )


async def _flood(server: DaphneServer, prefix: str) -> Flood:
    """Keep a consumer busy, flood its socket, then ask ``whoami``; a victim's socket is pinged meanwhile."""
    assert server.process is not None
    attacker_key, victim_key = await sync_to_async(_users)(prefix)
    victim = await open_ws(server.ws_url, cookie=f"sessionid={victim_key}")
    assert (await recv_json(victim))["type"] == "welcome"
    frame = masked_text_frame(json.dumps({"type": "ping", "pad": PAD}).encode())
    assert 60 * 1024 < len(frame) < 64 * 1024
    flooder = await asyncio.to_thread(Flooder, server.port, attacker_key)
    assert await asyncio.to_thread(flooder.wait_for, "welcome", 1, 10)
    rss = PeakRss(server.process.pid)
    rss_before = rss.peak
    try:
        for _ in range(REPLAYS):
            flooder.send_json({"type": "subscribe", "topic": f"room.{prefix}", "since": 0})
        blast = asyncio.create_task(asyncio.to_thread(flooder.blast, frame, FRAMES, time.monotonic() + BLAST_SECONDS))
        await asyncio.sleep(1)  # the flood is under way: another user's socket still answers
        await send_json(victim, {"type": "ping"})
        await recv_type(victim, "pong", wait=5)
        try:
            sent, longest_block = await blast
        except OSError as error:
            raise AssertionError(f"{error}; reader: {flooder.read_error!r}, got {dict(flooder.types)}") from error
        flooder.send_json({"type": "whoami"})
        answered = await asyncio.to_thread(flooder.wait_for, "whoami", 1, DRAIN_SECONDS)
        await send_json(victim, {"type": "ping"})
        await recv_type(victim, "pong", wait=5)
    finally:
        peak = rss.stop()
        flooder.close()
        await victim.close()
    return Flood(sent, longest_block, rss_before, peak, answered, flooder)


async def test_a_client_flooding_a_busy_consumer_is_held_back_and_memory_stays_bounded(
    flood_server: DaphneServer,
) -> None:
    kind = flood_server.env["WS_SERVER"]
    pauses_before = await asyncio.to_thread(_inbound_pauses, flood_server)
    flood = await _flood(flood_server, f"flood-{kind}")
    print("\n" + flood.describe(kind))
    assert flood.sent == FRAMES
    flooder = flood.flooder
    assert flood.answered, f"no whoami answer after the flood; close {flooder.close_code}, got {dict(flooder.types)}"
    assert flooder.close_code is None
    assert flooder.types["pong"] + flooder.types["error"] >= FRAMES  # every flooded frame was handled
    assert flood.growth <= RSS_BOUND_MIB, f"RSS grew by {flood.growth:.1f} MiB during the flood"
    if kind == "daphne":
        assert await asyncio.to_thread(_inbound_pauses, flood_server) > pauses_before


async def test_the_bound_is_ws_max_pending_frames(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path
) -> None:
    """Daphne with ``WS_MAX_PENDING_FRAMES`` far above the flood: it queues the flood (the bound is the setting)."""
    env = {**service_env, **UNLIMITED_RATE, "WS_SERVER": "daphne", "WS_MAX_PENDING_FRAMES": str(FRAMES * 10)}
    server = DaphneServer.ws(env, logs_dir / "flood-ws-unbounded.log")
    server.start()
    try:
        flood = await _flood(server, "flood-unbounded")
    finally:
        server.stop()
    print("\n" + flood.describe("daphne, WS_MAX_PENDING_FRAMES=30000"))
    assert flood.sent == FRAMES
    assert flood.answered
    assert flood.growth > UNBOUNDED_GROWTH_MIB, f"RSS grew by only {flood.growth:.1f} MiB"


async def test_a_flood_over_the_rate_limit_is_closed_1008_promptly_with_memory_bounded(ws_server: DaphneServer) -> None:
    """With the default rate limit, the flood ends in close 1008 once the busy consumer gets to it.

    The pause holds the flood back until then (memory bounded), and does not
    stand in the way of the close: the consumer drains the queue, reading
    resumes, and the closing handshake completes at once (autobahn would drop
    an unanswered one after 1 s).
    """
    assert ws_server.process is not None
    kind = ws_server.env["WS_SERVER"]
    prefix = f"flood-limited-{kind}"
    attacker_key, victim_key = await sync_to_async(_users)(prefix)
    victim = await open_ws(ws_server.ws_url, cookie=f"sessionid={victim_key}")
    assert (await recv_json(victim))["type"] == "welcome"
    frame = masked_text_frame(json.dumps({"type": "ping", "pad": PAD}).encode())
    flooder = await asyncio.to_thread(Flooder, ws_server.port, attacker_key)
    assert await asyncio.to_thread(flooder.wait_for, "welcome", 1, 10)
    rss = PeakRss(ws_server.process.pid)
    rss_before = rss.peak
    try:
        for _ in range(RATE_LIMITED_REPLAYS):
            flooder.send_json({"type": "subscribe", "topic": f"room.{prefix}", "since": 0})
        sent, longest_block = await asyncio.to_thread(flooder.blast, frame, FRAMES, time.monotonic() + BLAST_SECONDS)
        assert await asyncio.to_thread(flooder.ended.wait, DRAIN_SECONDS)
        await send_json(victim, {"type": "ping"})
        await recv_type(victim, "pong", wait=5)
    finally:
        peak = rss.stop()
        flooder.close()
        await victim.close()
    growth = peak - rss_before
    assert flooder.close_received_at is not None, f"no close frame; reader: {flooder.read_error!r}"
    closing_seconds = (flooder.server_gone_at or time.monotonic()) - flooder.close_received_at
    print(
        f"\n{kind}: {sent} frames sent, longest send blocked {longest_block:.2f} s, close {flooder.close_code}, "
        f"server gone {closing_seconds:.2f} s after it, RSS {rss_before:.1f} -> peak {peak:.1f} MiB (+{growth:.1f})"
    )
    assert flooder.close_code == 1008
    assert flooder.server_gone_at is not None, f"the closing handshake did not finish: {flooder.read_error!r}"
    assert closing_seconds < CLOSING_SECONDS
    assert growth <= RSS_BOUND_MIB, f"RSS grew by {growth:.1f} MiB during the flood"
