"""The reconnect storm (issue #13) end to end in its smallest mode: raw and both product servers restarted.

Runs ``python -m bench --smoke --reps 1 --scenarios reconnect`` as a subprocess
against real servers (PostgreSQL, Redis, the product on Daphne and Uvicorn,
the raw ``websockets`` server), with the project's own client
(``wsclient.WsClient``) in the client processes. Each server process gets
SIGTERM and a new one starts on its port while messages are published; the
test checks that every figure is in the table and the JSON, that every
client came back, and that the product lost and duplicated nothing. The
times themselves are not judged here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.context import SMOKE
from bench.report import FIGURES

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ("raw", "product-daphne", "product-uvicorn")
RECONNECT = [figure for figure in FIGURES if figure.key.startswith("reconnect_")]

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_reconnect_storm_measures_raw_and_product_with_nothing_lost(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--reps", "1", "--scenarios", "reconnect", "--only", *CONFIGS,
         "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    for figure in RECONNECT:
        assert f"| {figure.label} |" in result.stdout, figure.label
    assert "| reconnect_100_s |" in result.stdout
    assert "reconnect storm 100 % <= 3x raw, 0 lost" in result.stdout
    document = json.loads(output.read_text())
    for name in CONFIGS:
        measured = document["configs"][name]
        assert measured["errors"] == [], measured["errors"]
        figures = {key: value["median"] for key, value in measured["summary"].items()}
        missing = [figure.key for figure in RECONNECT if figures.get(figure.key) is None]
        assert missing == [], f"{name} lacks {missing}"
        assert figures["reconnect_failures"] == 0, name
        assert figures["reconnect_lost"] == 0, name
        assert figures["reconnect_lost_resubscribed"] == 0, name
        assert figures["reconnect_not_resubscribed"] == 0, name
        assert figures["reconnect_duplicates"] == 0, name
        assert 0 < figures["reconnect_50_s"] <= figures["reconnect_99_s"] <= figures["reconnect_100_s"], name
        assert figures["reconnect_restart_s"] < figures["reconnect_100_s"], name
        assert figures["reconnect_attempts_per_client"] >= 1, name
        if name != "raw":  # the product stores what was published while it was away; every client replayed it
            assert figures["reconnect_missed"] >= 1, name
    for product in CONFIGS[1:]:
        ratio = document["ratios"][f"{product}/raw"]["reconnect_100_s"]
        assert ratio is not None
        assert ratio > 0
    assert SMOKE.reconnect == document["meta"]["sizes"]["reconnect"]
    # Where the time went: each restart's timeline (failed attempts by kind, sleeps, welcomes) in the log dir.
    logs = re.search(r"logs in (\S+)", result.stderr)
    assert logs is not None, result.stderr[-2000:]
    for name in CONFIGS:
        timelines = list(Path(logs.group(1)).glob(f"reconnect-timeline-{name}-*.txt"))
        assert len(timelines) == 1, (name, timelines)
        text = timelines[0].read_text()
        restarts = re.search(r"'close 1012': (\d+)", text)  # every client was told: service restart
        assert restarts is not None, text[:2000]
        assert int(restarts.group(1)) >= SMOKE.reconnect, text[:2000]
        assert "backoff sleeps:" in text, text[:2000]
        assert "'welcome': " in text, text[:2000]
        assert "'resubscribed': " in text, text[:2000]
