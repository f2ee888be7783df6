"""The issue #12 targets computed from medians: idle CPU against raw, the storm against raw and its own baseline."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import report
from bench.main import _parser, _sizes, main


def _results(figures: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One repetition per configuration, as ``bench.main.run`` stores it."""
    return {name: {"reps": [values], "summary": report.summarise([values])} for name, values in figures.items()}


def _statuses(figures: dict[str, dict[str, float]]) -> dict[str, str]:
    results = _results(figures)
    return {check["target"]: check["status"] for check in report.targets(results, report.ratios(results))}


def test_idle_cpu_is_judged_against_raw_in_the_same_run() -> None:
    statuses = _statuses(
        {"raw": {"idle_cpu_pct": 2.0}, "product-uvicorn": {"idle_cpu_pct": 5.0},
         "product-daphne": {"idle_cpu_pct": 3.9}}
    )  # fmt: skip
    assert statuses["uvicorn: idle CPU <= 2x raw"] == "missed"
    assert statuses["daphne: idle CPU <= 2x raw"] == "met"


def test_a_raw_server_too_quiet_to_measure_counts_as_the_floor() -> None:
    floor = report.IDLE_CPU_FLOOR_PCT
    statuses = _statuses(
        {"raw": {"idle_cpu_pct": 0.0}, "product-uvicorn": {"idle_cpu_pct": 1.5 * floor},
         "product-daphne": {"idle_cpu_pct": 3 * floor}}
    )  # fmt: skip
    assert statuses["uvicorn: idle CPU <= 2x raw"] == "met"
    assert statuses["daphne: idle CPU <= 2x raw"] == "missed"


def test_storm_targets_time_against_raw_presence_frames_per_user_and_delivery_against_the_quiet_baseline() -> None:
    raw = {
        "storm_subscribe_s": 0.1,
        "storm_presence_frames_per_user": 0.0,
        "storm_publish_last_ms": 5.0,
        "storm_quiet_publish_last_ms": 5.0,
    }
    within = {
        "storm_subscribe_s": 0.45,
        "storm_presence_frames_per_user": 9.5,
        "storm_publish_last_ms": 19.0,
        "storm_quiet_publish_last_ms": 10.0,
    }
    beyond = {"storm_subscribe_s": 0.6, "storm_presence_frames_per_user": 11.0, "storm_publish_last_ms": 21.0,
              "storm_quiet_publish_last_ms": 10.0}  # fmt: skip
    statuses = _statuses({"raw": raw, "product-uvicorn": within, "product-daphne": beyond})
    for name in ("subscribe storm <= 5x raw's time", "storm presence frames <= 10 x N",
                 "publish to last delivery after the storm <= 2x without presence"):  # fmt: skip
        assert statuses[f"uvicorn: {name}"] == "met", name
        assert statuses[f"daphne: {name}"] == "missed", name


def test_storm_and_idle_losses_count_as_errors_of_the_run() -> None:
    statuses = _statuses({"product-uvicorn": {"storm_lost": 1.0}, "product-daphne": {"idle_drops": 0.0}})
    assert statuses["product-uvicorn: 0 errors, 0 lost (every rep)"] == "missed"
    assert statuses["product-daphne: 0 errors, 0 lost (every rep)"] == "met"


def test_command_line_sizes_override_the_named_sizes() -> None:
    flags = ["--smoke", "--idle-connections", "9", "--idle-seconds", "0.5", "--storm-users", "7"]
    arguments = _parser().parse_args(flags)
    sizes = _sizes(arguments)
    assert (sizes.name, sizes.idle, sizes.idle_seconds, sizes.storm) == ("smoke", 9, 0.5, 7)
    assert _sizes(_parser().parse_args(["--quick"])).storm == 200


def test_non_positive_sizes_are_refused() -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--smoke", "--storm-users", "0"])
    assert refused.value.code == 2


def test_reconnect_storm_target_is_time_against_raw_and_nothing_lost_in_any_rep() -> None:
    raw = {"reconnect_100_s": 4.0, "reconnect_lost": 0.0}
    statuses = _statuses(
        {"raw": raw, "product-uvicorn": {"reconnect_100_s": 11.9, "reconnect_lost": 0.0},
         "product-daphne": {"reconnect_100_s": 12.1, "reconnect_lost": 0.0}}
    )  # fmt: skip
    assert statuses["uvicorn: reconnect storm 100 % <= 3x raw, 0 lost"] == "met"
    assert statuses["daphne: reconnect storm 100 % <= 3x raw, 0 lost"] == "missed"
    lossy = _statuses({"raw": raw, "product-uvicorn": {"reconnect_100_s": 5.0, "reconnect_lost": 2.0}})
    assert lossy["uvicorn: reconnect storm 100 % <= 3x raw, 0 lost"] == "missed"
    assert lossy["product-uvicorn: 0 errors, 0 lost (every rep)"] == "missed"
    assert lossy["daphne: reconnect storm 100 % <= 3x raw, 0 lost"] == "n/a"
    never_all_back = {"reconnect_100_s": math.nan, "reconnect_lost": 0.0, "reconnect_failures": 3.0}
    stragglers = _statuses({"raw": raw, "product-daphne": never_all_back})
    assert stragglers["daphne: reconnect storm 100 % <= 3x raw, 0 lost"] == "missed"


def test_reconnect_sizes_come_from_the_command_line() -> None:
    arguments = _parser().parse_args(["--quick", "--reconnect-clients", "2000", "--reconnect-rate", "2.5"])
    sizes = _sizes(arguments)
    assert (sizes.reconnect, sizes.reconnect_rate, sizes.reconnect_timeout) == (2000, 2.5, 120.0)
    with pytest.raises(SystemExit) as refused:
        main(["--smoke", "--reconnect-clients", "0"])
    assert refused.value.code == 2
