"""Results: medians (min-max) per configuration and figure, ratios, the issue's targets; Markdown and JSON."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.stats import summary


@dataclass(frozen=True, slots=True)
class Figure:
    key: str
    label: str
    better: Literal["higher", "lower", "zero"]
    digits: int = 1


FIGURES: tuple[Figure, ...] = (
    Figure("connect_rate", "connect+auth: connections/s", "higher"),
    Figure("connect_p50_ms", "connect+auth: handshake p50 (ms)", "lower"),
    Figure("connect_p99_ms", "connect+auth: handshake p99 (ms)", "lower"),
    Figure("connect_failures", "connect+auth: failures", "zero", 0),
    Figure("connect_db_peak", "connect+auth: peak database connections (app database)", "lower", 0),
    Figure("mem_per_conn_kib", "idle memory per connection (KiB)", "lower"),
    Figure("mem_rss_mib", "idle: tree RSS with N connections (MiB)", "lower"),
    Figure("mem_failures", "idle: connect failures", "zero", 0),
    Figure("hold_connected", "hold: connections open (2 processes)", "higher", 0),
    Figure("hold_failures", "hold: connect failures", "zero", 0),
    Figure("hold_drops", "hold: drops after the hold", "zero", 0),
    Figure("hold_busiest_process_sockets", "hold: sockets in the busiest server process", "lower", 0),
    Figure("hold_rss_per_conn_kib", "hold: RSS growth per connection (KiB)", "lower"),
    Figure("rr_throughput", "request/response: replies/s", "higher"),
    Figure("rr_p50_ms", "request/response: p50 (ms)", "lower", 2),
    Figure("rr_p99_ms", "request/response: p99 (ms)", "lower", 2),
    Figure("rr_errors", "request/response: errors", "zero", 0),
    Figure("fanout_last_ms", "fan-out: time to last delivery (ms)", "lower"),
    Figure("fanout_p50_ms", "fan-out: delivery p50 (ms)", "lower"),
    Figure("fanout_p99_ms", "fan-out: delivery p99 (ms)", "lower"),
    Figure("fanout_rate", "fan-out: deliveries/s", "higher"),
    Figure("fanout_lost", "fan-out: lost", "zero", 0),
    Figure("fanout_http_last_ms", "fan-out via HTTP API: time to last delivery (ms)", "lower"),
    Figure("fanout_http_p50_ms", "fan-out via HTTP API: p50 (ms)", "lower"),
    Figure("fanout_http_p99_ms", "fan-out via HTTP API: p99 (ms)", "lower"),
    Figure("fanout_http_rate", "fan-out via HTTP API: deliveries/s", "higher"),
    Figure("fanout_http_lost", "fan-out via HTTP API: lost", "zero", 0),
    Figure("fanout_setup_failures", "fan-out: subscribers not connected/subscribed", "zero", 0),
    Figure("idle_cpu_pct", "idle CPU: server tree, % of a core", "lower", 2),
    Figure("idle_connected", "idle CPU: connections open (one user each)", "higher", 0),
    Figure("idle_failures", "idle CPU: connect failures", "zero", 0),
    Figure("idle_drops", "idle CPU: drops after the window", "zero", 0),
    Figure("idle_settle_s", "idle CPU: wait for the server to be quiet before the window (s)", "lower", 1),
    Figure("idle_full_gcs", "idle CPU: full garbage collections in the window (product)", "lower", 0),
    Figure("storm_subscribe_s", "storm: time until all subscribed (s)", "lower", 3),
    Figure("storm_failures", "storm: users not connected/subscribed", "zero", 0),
    Figure("storm_frames", "storm: frames to the subscribers", "lower", 0),
    Figure("storm_presence_frames", "storm: presence frames to the subscribers", "lower", 0),
    Figure("storm_presence_frames_per_user", "storm: presence frames / N", "lower", 2),
    Figure("storm_traffic_s", "storm: first subscribe to last storm frame (s)", "lower", 2),
    Figure("storm_unsettled", "storm: client processes not quiet within the timeout", "lower", 0),
    Figure("storm_late_frames", "storm: frames after the quiet point (baseline not quiet)", "lower", 0),
    Figure("storm_publish_last_ms", "storm: publish to last delivery, after the storm (ms)", "lower"),
    Figure("storm_quiet_publish_last_ms", "storm: publish to last delivery, without presence (ms)", "lower"),
    Figure("storm_lost", "storm: lost", "zero", 0),
    Figure("reconnect_50_s", "reconnect storm: SIGTERM to 50 % back (s)", "lower", 2),
    Figure("reconnect_99_s", "reconnect storm: SIGTERM to 99 % back (s)", "lower", 2),
    Figure("reconnect_100_s", "reconnect storm: SIGTERM to 100 % back (s)", "lower", 2),
    Figure("reconnect_after_healthz_s", "reconnect storm: new process's /healthz to 100 % back (s)", "lower", 2),
    Figure("reconnect_exit_s", "reconnect storm: SIGTERM to the old process's exit (s)", "lower", 2),
    Figure("reconnect_restart_s", "reconnect storm: SIGTERM to the new process's /healthz (s)", "lower", 2),
    Figure("reconnect_missed", "reconnect storm: messages published while away (to replay)", "higher", 0),
    Figure("reconnect_attempts_per_client", "reconnect storm: connection attempts per client", "lower", 2),
    Figure("reconnect_resent", "reconnect storm: frames resent (dropped by the client as seen)", "lower", 0),
    Figure("reconnect_duplicates", "reconnect storm: messages emitted twice", "zero", 0),
    Figure("reconnect_lost", "reconnect storm: lost (message x client)", "zero", 0),
    Figure("reconnect_lost_resubscribed", "reconnect storm: lost by clients that resubscribed", "zero", 0),
    Figure("reconnect_not_resubscribed", "reconnect storm: clients never resubscribed", "lower", 0),
    Figure("reconnect_failures", "reconnect storm: clients not started or not back", "zero", 0),
    Figure("scenario_errors", "scenario errors (exceptions, crashed servers)", "zero", 0),
)
ERROR_FIGURES = tuple(figure.key for figure in FIGURES if figure.better == "zero")
RATIO_FIGURES = ("connect_rate", "connect_p99_ms", "mem_per_conn_kib", "rr_throughput", "rr_p99_ms", "fanout_rate",
                 "fanout_p99_ms", "idle_cpu_pct", "storm_subscribe_s", "reconnect_99_s",
                 "reconnect_100_s", "reconnect_after_healthz_s")  # fmt: skip
PRODUCTS = {"product-daphne": "daphne-bare", "product-uvicorn": "uvicorn-bare"}
# Idle CPU under this (% of a core) is below what /proc's 10 ms ticks resolve over a short window: a
# reference that quiet counts as this much in ratios, so a ratio is never a division by (nearly) zero.
IDLE_CPU_FLOOR_PCT = 0.1
FLOORS = {"idle_cpu_pct": IDLE_CPU_FLOOR_PCT}


def summarise(reps: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = {key for rep in reps for key in rep}
    return {key: summary([rep.get(key, math.nan) for rep in reps]) for key in sorted(keys)}


def _median(results: dict[str, Any], config: str, key: str) -> float:
    value = results.get(config, {}).get("summary", {}).get(key, {}).get("median", math.nan)
    return float(value) if value is not None else math.nan


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``product/reference`` of medians, for each product configuration and reference."""
    out: dict[str, dict[str, float]] = {}
    for product, ceiling in PRODUCTS.items():
        if product not in results:
            continue
        for reference in ("raw", "stock", ceiling):
            column = f"{product}/{reference}"
            out[column] = {}
            for key in RATIO_FIGURES:
                base = max(_median(results, reference, key), FLOORS.get(key, 0.0))
                out[column][key] = _median(results, product, key) / base if base and not math.isnan(base) else math.nan
    return out


def _target(name: str, value: float, limit: float, higher: bool) -> dict[str, Any]:
    passed = value >= limit if higher else value <= limit
    status = "n/a" if math.isnan(value) else "met" if passed else "missed"
    return {"target": name, "value": value, "limit": limit, "status": status}


def targets(results: dict[str, Any], table: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    def ratio(column: str, key: str) -> float:
        return table.get(column, {}).get(key, math.nan)

    checks = [
        _target("uvicorn: connect+auth >= 0.5x raw", ratio("product-uvicorn/raw", "connect_rate"), 0.5, True),
        _target("uvicorn: request/response >= 0.8x raw", ratio("product-uvicorn/raw", "rr_throughput"), 0.8, True),
        _target("uvicorn: fan-out deliveries/s >= 0.5x raw", ratio("product-uvicorn/raw", "fanout_rate"), 0.5, True),
        _target("daphne: connect+auth >= 0.9x Daphne ceiling", ratio("product-daphne/daphne-bare", "connect_rate"),
                0.9, True),
        _target("daphne: request/response >= 0.9x Daphne ceiling", ratio("product-daphne/daphne-bare", "rr_throughput"),
                0.9, True),
        _target("uvicorn: idle memory/conn <= 1.5x raw", ratio("product-uvicorn/raw", "mem_per_conn_kib"), 1.5, False),
        _target("daphne: idle memory/conn <= 1.5x raw", ratio("product-daphne/raw", "mem_per_conn_kib"), 1.5, False),
    ]  # fmt: skip
    for product in PRODUCTS:
        checks += _issue12_targets(product, results, table)
    for product in PRODUCTS:
        checks.append(_reconnect_target(product, results, table))
    for product in PRODUCTS:
        if product in results:
            worst = [rep.get(key, 0.0) for rep in results[product]["reps"] for key in ERROR_FIGURES]
            total = sum(value for value in worst if not math.isnan(value))
            checks.append(_target(f"{product}: 0 errors, 0 lost (every rep)", total, 0, False))
    return checks


def _issue12_targets(product: str, results: dict[str, Any], table: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Idle CPU and the subscribe storm (issue #12), for one product configuration."""
    server = product.removeprefix("product-")
    versus_raw = table.get(f"{product}/raw", {})
    after = _median(results, product, "storm_publish_last_ms")
    quiet = _median(results, product, "storm_quiet_publish_last_ms")
    per_user = _median(results, product, "storm_presence_frames_per_user")
    return [
        _target(f"{server}: idle CPU <= 2x raw", versus_raw.get("idle_cpu_pct", math.nan), 2.0, False),
        _target(f"{server}: subscribe storm <= 5x raw's time", versus_raw.get("storm_subscribe_s", math.nan), 5.0,
                False),
        _target(f"{server}: storm presence frames <= 10 x N", per_user, 10.0, False),
        _target(f"{server}: publish to last delivery after the storm <= 2x without presence",
                after / quiet if quiet > 0 else math.nan, 2.0, False),
    ]  # fmt: skip


def _reconnect_target(product: str, results: dict[str, Any], table: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Issue #13: the reconnect storm back to 100 % within 3x raw's time, with no message lost and every client
    back in every repetition."""
    server = product.removeprefix("product-")
    check = _target(
        f"{server}: reconnect storm 100 % <= 3x raw, 0 lost",
        table.get(f"{product}/raw", {}).get("reconnect_100_s", math.nan),
        3.0,
        False,
    )
    reps = [rep for rep in results.get(product, {}).get("reps", []) if "reconnect_lost" in rep]
    if any(rep["reconnect_lost"] != 0 or rep.get("reconnect_failures", 0) != 0 for rep in reps):
        check["status"] = "missed"  # also when 100 % was never reached (no time, so no ratio)
    return check


def _cell(stats: dict[str, float] | None, digits: int) -> str:
    if not stats or stats["median"] is None or math.isnan(stats["median"]):
        return "-"
    median, low, high = stats["median"], stats["min"], stats["max"]
    text = f"{median:,.{digits}f}"
    if not math.isclose(low, high):
        text += f" ({low:,.{digits}f}-{high:,.{digits}f})"
    return text


def markdown(document: dict[str, Any]) -> str:
    results: dict[str, Any] = document["configs"]
    names = list(results)
    lines = [
        f"## Benchmark ({document['meta']['sizes']['name']}, {document['meta']['reps']} reps: median (min-max))",
        "",
    ]
    lines.append("| figure | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for figure in FIGURES:
        cells = [_cell(results[name]["summary"].get(figure.key), figure.digits) for name in names]
        if any(cell != "-" for cell in cells):
            lines.append(f"| {figure.label} | " + " | ".join(cells) + " |")
    table: dict[str, dict[str, float]] = document["ratios"]
    if table:
        columns = list(table)
        lines += ["", "### Ratios of medians", "", "| figure | " + " | ".join(columns) + " |"]
        lines.append("|---|" + "---:|" * len(columns))
        for key in RATIO_FIGURES:
            values = [table[column].get(key, math.nan) for column in columns]
            lines.append(f"| {key} | " + " | ".join("-" if math.isnan(v) else f"{v:.2f}" for v in values) + " |")
    lines += ["", "### Targets (issues #6, #12 and #13)", "", "| target | value | status |", "|---|---:|---|"]
    for check in document["targets"]:
        value = "-" if math.isnan(check["value"]) else f"{check['value']:.2f}"
        lines.append(f"| {check['target']} | {value} | {check['status']} |")
    lines += ["", "Notes:", ""]
    lines += [f"* {note}" for note in document["meta"]["notes"]]
    env = document["meta"]["server_env"]
    lines.append("* server environment: " + " ".join(f"`{key}={value}`" for key, value in sorted(env.items())))
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def write_json(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(document), indent=2, allow_nan=False) + "\n")
