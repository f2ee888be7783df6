"""The idle CPU window reads the CPU time of a whole process tree from /proc (real processes, no server needed)."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

from bench.infra import ServerProcess
from bench.proctree import wait_quiet
from bench.scenarios.idle import cpu_over_window

# A parent that only waits, and a child that spins: the tree's CPU is the child's.
SPINNING_CHILD = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"
SLEEPER = "import time; time.sleep(60)"
# Quiet for 0.6 s, then busy for 1 s (as a garbage collection a moment after the connects), then quiet.
LATE_WORK = "import time; time.sleep(0.6); t = time.monotonic()\nwhile time.monotonic() - t < 1.0: pass\ntime.sleep(60)"
# Its own /metrics (prometheus_client's default registry) on the port the harness gave it, after two full collections.
WITH_METRICS = (
    "import gc, os, time; from prometheus_client import start_http_server; gc.collect(); gc.collect(); "
    "start_http_server(int(os.environ['METRICS_PORT']), addr='127.0.0.1'); time.sleep(60)"
)


def _started(name: str, code: str, log_dir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    process = ServerProcess(name, [sys.executable, "-c", code], dict(os.environ) | (env or {}), log_dir)
    process.start()
    return process


def test_window_charges_a_spinning_child_to_its_tree_and_nothing_to_a_sleeper(tmp_path: Path) -> None:
    busy, idle = _started("busy", SPINNING_CHILD, tmp_path), _started("idle", SLEEPER, tmp_path)
    try:
        cpu_over_window(busy, 0.5)  # the child is running and spinning
        busy_used, busy_elapsed = cpu_over_window(busy, 1.0)
        idle_used, idle_elapsed = cpu_over_window(idle, 1.0)
    finally:
        busy.stop()
        idle.stop()
    assert busy_elapsed >= 1.0
    assert idle_elapsed >= 1.0
    assert busy_used / busy_elapsed > 0.2  # a shared 2-core machine still gives a spinning process this much
    assert idle_used / idle_elapsed < 0.05


def test_window_ends_early_when_the_process_exits(tmp_path: Path) -> None:
    short = _started("short", "import time; time.sleep(0.3)", tmp_path)
    try:
        _, elapsed = cpu_over_window(short, 20.0)
    finally:
        short.stop()
    assert elapsed < 5.0


def test_quiet_for_waits_out_work_that_starts_after_a_short_quiet(tmp_path: Path) -> None:
    late = _started("late", LATE_WORK, tmp_path)
    try:
        started = time.monotonic()
        first_quiet = wait_quiet([late.pid], timeout=10.0)  # one quiet interval: before the work starts
        waited = wait_quiet([late.pid], timeout=10.0, quiet_for=1.0)
        total = time.monotonic() - started
    finally:
        late.stop()
    assert first_quiet < 0.6
    assert total > 1.6  # not before the busy second was over
    assert waited < 8.0


def test_full_collections_come_from_the_process_metrics(tmp_path: Path) -> None:
    served = _started("metrics", WITH_METRICS, tmp_path, {"METRICS_PORT": "{metrics_port}"})
    bare = _started("bare", SLEEPER, tmp_path)
    try:
        assert served.metrics_port is not None
        deadline = time.monotonic() + 20.0
        collections = served.full_collections()
        while math.isnan(collections) and time.monotonic() < deadline:
            time.sleep(0.2)
            collections = served.full_collections()
        assert served.env["METRICS_PORT"] == str(served.metrics_port)
        assert bare.metrics_port is None
        assert math.isnan(bare.full_collections())
    finally:
        served.stop()
        bare.stop()
    assert collections >= 2
