"""The ws process tunes its garbage collector before it listens (``ws_service.launcher.gc_tuning``)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async

from tests.support.live import open_ws, recv_json
from tests.support.servers import DaphneServer
from tests.support.users import make_users, session_key_for

THRESHOLD = 40_000


def test_tune_freezes_the_start_up_objects_and_sets_the_young_threshold() -> None:
    """In a fresh interpreter, so this test process's collector is left alone."""
    program = (
        "import gc, json\n"
        "import django.db.models\n"  # start-up objects worth freezing
        "from ws_service.launcher.gc_tuning import tune\n"
        "before = gc.get_freeze_count()\n"
        f"tune({THRESHOLD})\n"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()[0]]))\n"
        "tune(0)\n"
        "print(json.dumps(gc.get_threshold()[0]))\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    tuned, untouched = result.stdout.splitlines()
    before, frozen, young = json.loads(tuned)
    assert before == 0
    assert frozen > 10_000
    assert young == THRESHOLD
    assert json.loads(untouched) == THRESHOLD  # 0 leaves the threshold as it is
    assert gc.get_freeze_count() == 0  # this process untouched


def test_the_ws_process_applies_it_before_listening(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> None:
    log = logs_dir / f"gc-{ws_server_kind}.log"
    overrides = {"WS_GC_THRESHOLD": str(THRESHOLD), "DJANGO_LOG_LEVEL": "INFO"}
    with DaphneServer.running_ws(service_env, log, ws_server_kind, **overrides):
        lines = [line for line in log.read_text().splitlines() if "garbage collector:" in line]
    assert lines, log.read_text()[-2000:]
    assert f"young threshold {THRESHOLD}" in lines[-1]
    frozen = int(lines[-1].split("garbage collector: ")[1].split()[0])
    assert frozen > 10_000


BURST = 100  # above the pacer's minimum growth (64)


def _full_collections(server: DaphneServer) -> int:
    """Full (generation 2) collections of the ws process so far, from its /metrics."""
    text = httpx.get(server.metrics_url, timeout=5).text
    found = re.search(r'^python_gc_collections_total\{generation="2"\} (\S+)$', text, re.MULTILINE)
    assert found, text[-2000:]
    return int(float(found.group(1)))


def _planned(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "planned full collection" in line]


@pytest.mark.django_db(transaction=True)
async def test_a_connect_burst_ends_with_one_planned_full_collection(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> None:
    """The pacer (``ws_service.gc_pacing``) is installed in the ws process and runs a full collection after a burst."""
    users = await sync_to_async(make_users)(f"gcburst-{ws_server_kind}-", 1)
    cookie = f"sessionid={await sync_to_async(session_key_for)(users[0])}"
    log = logs_dir / f"gc-burst-{ws_server_kind}.log"
    overrides = {
        "DJANGO_LOG_LEVEL": "INFO",
        "WS_MAX_CONNECTIONS_PER_USER": str(BURST),
        "WS_HANDSHAKE_BURST_PER_ADDRESS": str(BURST),
    }
    with DaphneServer.running_ws(service_env, log, ws_server_kind, **overrides) as server:
        before = _full_collections(server)
        sockets = await asyncio.gather(*(open_ws(server.ws_url, cookie=cookie, open_timeout=30) for _ in range(BURST)))
        try:
            for ws in sockets:
                assert (await recv_json(ws, 30))["type"] == "welcome"
            for _ in range(100):  # the hold ends 1 s after the last connection: at most 10 s
                if _planned(log):
                    break
                await asyncio.sleep(0.1)
            after = _full_collections(server)
            planned = _planned(log)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))
        for _ in range(100):  # closing them all: another planned collection collects their frozen cycles
            if len(_planned(log)) > 1:
                break
            await asyncio.sleep(0.1)
        after_closes = _planned(log)
    assert len(planned) == 1, log.read_text()[-3000:]
    assert f"at {BURST} open connections after a" in planned[0]
    assert "objects frozen" in planned[0]
    assert after - before >= 1
    assert len(after_closes) == 2, log.read_text()[-3000:]
    assert "closed" in after_closes[1]
