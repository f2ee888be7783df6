"""The idle CPU window reads the CPU time of a whole process tree from /proc (real processes, no server needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.infra import ServerProcess
from bench.scenarios.idle import cpu_over_window

# A parent that only waits, and a child that spins: the tree's CPU is the child's.
SPINNING_CHILD = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"
SLEEPER = "import time; time.sleep(60)"


def _started(name: str, code: str, log_dir: Path) -> ServerProcess:
    process = ServerProcess(name, [sys.executable, "-c", code], os.environ, log_dir)
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
