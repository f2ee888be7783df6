"""The benchmark harness end to end in its smallest mode: every configuration, every figure, no errors.

Runs ``python -m bench --smoke --reps 1`` as a subprocess against real
servers (PostgreSQL, Redis, the product on Daphne and Uvicorn, the reference
servers) and reads the JSON it writes, the idle CPU and subscribe storm
scenarios of issue #12 and the reconnect storm of issue #13 (raw and product
only) included. The numbers themselves are not judged here; docs/benchmark.md says how to run the real benchmark.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.configs import CONFIGS
from bench.context import SMOKE
from bench.report import ERROR_FIGURES, FIGURES
from bench.runner import RECONNECT_KINDS

ROOT = Path(__file__).resolve().parents[2]
# Only the product publishes over HTTP and serves /metrics (full garbage collections in the idle window).
PRODUCT_ONLY = (*(figure.key for figure in FIGURES if figure.key.startswith("fanout_http_")), "idle_full_gcs")
RECONNECT_ONLY = tuple(figure.key for figure in FIGURES if figure.key.startswith("reconnect_"))

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_quickest_run_measures_every_configuration_and_figure(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--reps", "1", "--json", str(output)],
        cwd=ROOT,
        # As on a fresh checkout: no collected static files from the test session (the bench collects its own).
        env={key: value for key, value in os.environ.items() if key != "DJANGO_STATIC_ROOT"},
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "### Targets" in result.stdout
    document = json.loads(output.read_text())
    assert set(document["configs"]) == {config.name for config in CONFIGS}
    for config in CONFIGS:
        measured = document["configs"][config.name]
        assert measured["errors"] == [], measured["errors"]
        expected = [
            f.key
            for f in FIGURES
            if (config.kind == "product" or f.key not in PRODUCT_ONLY)
            and (config.kind in RECONNECT_KINDS or f.key not in RECONNECT_ONLY)
        ]
        missing = [key for key in expected if measured["summary"].get(key, {}).get("median") is None]
        assert missing == [], f"{config.name} lacks {missing}"
        errors = {key: measured["summary"][key]["max"] for key in ERROR_FIGURES if key in measured["summary"]}
        assert all(value == 0 for value in errors.values()), f"{config.name}: {errors}"
        assert measured["summary"]["hold_drops"]["max"] == 0
        assert measured["summary"]["idle_connected"]["median"] == SMOKE.idle
        if config.kind == "product":
            assert measured["summary"]["idle_full_gcs"]["median"] >= 0
        assert measured["summary"]["storm_unsettled"]["max"] == 0
    assert {check["status"] for check in document["targets"]} <= {"met", "missed"}
