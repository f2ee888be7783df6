"""The ws process tunes its garbage collector before it listens (``ws_service.launcher.gc_tuning``)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from tests.support.servers import DaphneServer

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
