"""Prometheus metrics (docs/operations.md: Metrics) on real processes, the multi-process exposition, and the dashboard.

* live ws and web servers: real WebSocket and HTTP traffic moves the counters
  on the internal ``METRICS_PORT``; the public app ports answer ``/metrics``
  with 404;
* two real processes sharing a ``PROMETHEUS_MULTIPROC_DIR`` are summed by
  ``shared.metrics_server`` (a dead process's gauges disappear, its counters
  stay), and so are the workers of ``WS_WORKERS=2`` behind the launcher;
* every metric the Grafana dashboard queries exists in a live ``/metrics``;
* in-process (WebsocketCommunicator): unknown client types never create
  series, pushed payloads of any type are counted, rate-limited frames and
  drains are counted.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings as SettingsWrapper
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from shared.metrics_server import start_metrics_server
from shared.push import push_to_user
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.live import fetch_ticket, login, open_ws, recv_json, session_cookie
from tests.support.servers import HOST, DaphneServer
from tests.support.users import PASSWORD, make_user, make_users, session_key_for
from ws_service.protocol import CLOSE_UNAUTHENTICATED
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ws-dashboard.json"
TOPIC = "room.metrics"

# (sample name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Exposition:
    """One parsed ``/metrics`` text: samples, and which family each sample name belongs to."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: Samples = {}
        self.family_of: dict[str, str] = {}
        self.families: dict[str, str] = {}  # family name -> type
        for family in text_string_to_metric_families(text):
            self.families[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
                self.family_of[sample.name] = family.name

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (yet)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def label_values(self) -> set[str]:
        return {value for _name, labels in self.samples for _key, value in labels}


def scrape(url: str) -> Exposition:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return Exposition(response.text)


async def ascrape(url: str) -> Exposition:
    return await asyncio.to_thread(scrape, url)


async def eventually(check: Callable[[], Awaitable[None]]) -> None:
    """Run ``check`` until it stops raising ``AssertionError`` (after 10 s the last failure is raised)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            await check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def delta(after: Exposition, before: Exposition, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


# -- PromQL names in the dashboard -------------------------------------------------

_PROMQL_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_PROMQL_MATCHERS = re.compile(r"\{[^}]*\}")
_PROMQL_RANGES = re.compile(r"\[[^\]]*\]")
_PROMQL_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_PROMQL_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:]|\s*\()")
_PROMQL_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"})
_PROMQL_KEYWORDS |= {"offset", "bool", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric (sample) names an expression selects: strings, matchers, ranges, groupings, calls removed."""
    stripped = _PROMQL_STRINGS.sub(" ", expr)
    stripped = _PROMQL_MATCHERS.sub(" ", stripped)
    stripped = _PROMQL_RANGES.sub(" ", stripped)
    stripped = _PROMQL_GROUPING.sub(" ", stripped)
    stripped = re.sub(r"\$\w+", " ", stripped)  # Grafana variables ($__rate_interval)
    names = set(_PROMQL_IDENTIFIER.findall(stripped))
    return {name for name in names if name.lower() not in _PROMQL_KEYWORDS}


def test_promql_metric_names_are_extracted_exactly() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, outcome) (rate(ws_handshake_seconds_bucket{job=~"$ws_job", '
        'outcome="accepted"}[$__rate_interval]))) / on (job) group_left sum(ws_connections_open offset 5m) '
        "+ sum without (instance) (rate(web_requests_total[5m])) > bool 0"
    )
    assert promql_metric_names(expr) == {"ws_handshake_seconds_bucket", "ws_connections_open", "web_requests_total"}
    assert promql_metric_names("label_values(web_requests_total, job)") == {"web_requests_total", "job"}


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    dashboard = _dashboard()
    queries = [target["expr"] for panel in _panels(dashboard["panels"]) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def test_the_dashboard_is_an_importable_prometheus_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_the_dashboard_charts_every_ws_and_web_metric() -> None:
    import web_service.metrics
    import ws_service.metrics

    modules = (ws_service.metrics, web_service.metrics)
    defined = {
        metric._name  # the family name prometheus_client registered
        for module in modules
        for metric in vars(module).values()
        if hasattr(metric, "_name") and hasattr(metric, "_type")
    }
    assert len(defined) >= 11
    queried = {name for expr in dashboard_queries() for name in promql_metric_names(expr)}
    queried_families = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in queried}
    assert defined <= queried_families, f"not on the dashboard: {sorted(defined - queried_families)}"


# -- multi-process exposition ------------------------------------------------------

CHILD = """
import sys
from ws_service import metrics

metrics.CONNECTIONS_OPEN.inc(int(sys.argv[1]))
metrics.track_received_type("ping")  # what registering the ping feature does
metrics.RECEIVED["ping"].inc(3)
metrics.handshake_decided(metrics.handshake_started({"type": "websocket"}), metrics.OUTCOME_ACCEPTED)
metrics.count_error("bad_json")
print("ready", flush=True)
sys.stdin.readline()
"""


def _child(directory: Path, open_connections: int) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(open_connections)],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("\n")
    process.stdin.close()
    assert process.wait(timeout=10) == 0
    process.stdout.close()


def test_two_processes_sharing_a_multiproc_dir_are_summed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _child(tmp_path, 2), _child(tmp_path, 5)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    server = start_metrics_server(0, HOST)
    url = f"http://{HOST}:{server.server_port}"
    try:
        both = scrape(f"{url}/metrics")
        assert both.value("ws_connections_open") == 7  # livesum of the live processes
        assert both.value("ws_messages_received_total", type="ping") == 6
        assert both.value("ws_error_frames_total", code="bad_json") == 2
        assert both.value("ws_handshake_seconds_count", outcome="accepted") == 2
        assert both.value("ws_handshake_seconds_bucket", outcome="accepted", le="+Inf") == 2
        assert both.families["ws_connection_attempts"] == "counter"
        assert both.value("ws_connection_attempts_total", outcome="accepted") == 2
        assert httpx.get(f"{url}/", timeout=5).status_code == 404
        assert httpx.get(f"{url}/metrics/extra", timeout=5).status_code == 404

        _stop(first)
        mark_process_dead(first.pid, str(tmp_path))  # type: ignore[no-untyped-call]  # as the ws supervisor does
        one_left = scrape(f"{url}/metrics")
        assert one_left.value("ws_connections_open") == 5  # the dead process's gauge is gone
        assert one_left.value("ws_messages_received_total", type="ping") == 6  # its counters stay
        assert one_left.value("ws_handshake_seconds_count", outcome="accepted") == 2
    finally:
        server.shutdown()
        server.server_close()
        for process in (first, second):
            if process.poll() is None:
                _stop(process)


# -- live servers --------------------------------------------------------------------


async def _frames_until(ws: ClientConnection, wanted: set[str], wait: float = 5) -> dict[str, dict[str, Any]]:
    """Read server frames until one of each ``wanted`` type has arrived (others are kept too)."""
    seen: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(wait):
        while not wanted <= seen.keys():
            frame = await recv_json(ws)
            seen.setdefault(frame["type"], frame)
    return seen


async def _send_raw(ws: ClientConnection, frame: dict[str, Any]) -> None:
    """A frame the protocol does not allow (so not validated against docs/asyncapi.yaml first)."""
    await ws.send(json.dumps(frame))


async def test_real_traffic_moves_the_ws_and_web_metrics(web_server: DaphneServer, ws_server: DaphneServer) -> None:
    ws_before, web_before = await ascrape(ws_server.metrics_url), await ascrape(web_server.metrics_url)
    await sync_to_async(make_user)("alice")
    client = await login(web_server.http_url, "alice", PASSWORD)
    unknown_type = f"no-such-type-{secrets.token_hex(8)}"

    ws = await open_ws(ws_server.ws_url, cookie=session_cookie(client))
    assert (await recv_json(ws))["type"] == "welcome"

    async def one_more_open() -> None:
        now = await ascrape(ws_server.metrics_url)
        assert now.value("ws_connections_open") == ws_before.value("ws_connections_open") + 1

    await eventually(one_more_open)
    await ws.send(json.dumps({"type": "ping"}))
    assert (await recv_json(ws))["type"] == "pong"
    await ws.send(json.dumps({"type": "subscribe", "topic": TOPIC}))
    assert (await recv_json(ws))["type"] == "subscribed"
    await ws.send(json.dumps({"type": "publish", "topic": TOPIC, "text": "counted", "ref": "p1"}))
    await _frames_until(ws, {"ack", "message"})
    await _send_raw(ws, {"type": unknown_type})
    error = (await _frames_until(ws, {"error"}))["error"]
    assert error["code"] == "unknown_type"
    await _send_raw(ws, {"type": "subscribe", "topic": "Not A Topic"})
    error = (await _frames_until(ws, {"error"}))["error"]
    assert error["code"] == "bad_topic"
    await ws.close()

    ticket = (await fetch_ticket(client))["ticket"]
    with_ticket = await open_ws(ws_server.ws_url, ticket=ticket)
    assert (await recv_json(with_ticket))["type"] == "welcome"
    await with_ticket.close()

    anonymous = await open_ws(ws_server.ws_url)  # no cookie, no ticket
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(anonymous)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_UNAUTHENTICATED

    with pytest.raises(InvalidStatus) as refused:
        await open_ws(ws_server.ws_url, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    await client.aclose()

    async def ws_counted() -> None:
        after = await ascrape(ws_server.metrics_url)
        expected = {
            ("ws_connection_attempts_total", "outcome", "accepted"): 2,
            ("ws_connection_attempts_total", "outcome", "unauthenticated"): 1,
            ("ws_connection_attempts_total", "outcome", "origin_refused"): 1,
            ("ws_handshake_seconds_count", "outcome", "accepted"): 2,
            ("ws_handshake_seconds_count", "outcome", "unauthenticated"): 1,
            ("ws_handshake_seconds_count", "outcome", "origin_refused"): 1,
            ("ws_messages_received_total", "type", "ping"): 1,
            ("ws_messages_received_total", "type", "subscribe"): 2,
            ("ws_messages_received_total", "type", "publish"): 1,
            ("ws_messages_received_total", "type", "unknown"): 1,
            ("ws_messages_sent_total", "type", "welcome"): 2,
            ("ws_messages_sent_total", "type", "pong"): 1,
            ("ws_messages_sent_total", "type", "subscribed"): 1,
            ("ws_messages_sent_total", "type", "ack"): 1,
            ("ws_messages_sent_total", "type", "message"): 1,
            ("ws_messages_sent_total", "type", "error"): 2,
            ("ws_error_frames_total", "code", "unknown_type"): 1,
            ("ws_error_frames_total", "code", "bad_topic"): 1,
            ("ws_channel_layer_send_seconds_count", "event", "topic_message"): 1,
        }
        moved = {key: delta(after, ws_before, key[0], **{key[1]: key[2]}) for key in expected}
        assert moved == expected
        assert after.value("ws_connections_open") == ws_before.value("ws_connections_open")
        assert after.value("ws_drains_in_progress") == 0
        assert unknown_type not in after.label_values()  # a client's type never becomes a label

    await eventually(ws_counted)

    web_after = await ascrape(web_server.metrics_url)
    web_moved = {
        ("GET", "2xx", "accounts/login/"): 1,
        ("POST", "3xx", "accounts/login/"): 1,
        ("POST", "2xx", "api/ws-ticket"): 1,
    }
    for (method, status, route), count in web_moved.items():
        assert delta(web_after, web_before, "web_requests_total", method=method, status=status, route=route) == count
    assert delta(web_after, web_before, "web_request_duration_seconds_count", method="POST", route="api/ws-ticket") == 1
    assert web_after.value("web_requests_in_progress") == 0
    assert "/api/ws-ticket" not in web_after.label_values()  # routes are patterns, never raw paths


async def test_the_public_ports_do_not_serve_metrics(web_server: DaphneServer, ws_server: DaphneServer) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for server in (web_server, ws_server):
            assert (await client.get(f"{server.http_url}/metrics")).status_code == 404, server.name
            internal = await client.get(server.metrics_url)
            assert internal.status_code == 200
            assert internal.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "# TYPE ws_connections_open gauge" in (await client.get(ws_server.metrics_url)).text
        assert "# TYPE web_requests_total counter" in (await client.get(web_server.metrics_url)).text


async def test_every_metric_the_dashboard_queries_is_live(web_server: DaphneServer, ws_server: DaphneServer) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        await client.get(f"{web_server.http_url}/healthz")  # at least one labelled web series
    ws_live, web_live = await ascrape(ws_server.metrics_url), await ascrape(web_server.metrics_url)
    live = ws_live.family_of | web_live.family_of
    live_types = ws_live.families | web_live.families
    queried = {name for expr in dashboard_queries() for name in promql_metric_names(expr)} - {"job"}
    assert len(queried) >= 15
    missing = sorted(name for name in queried if name not in live)
    assert not missing, f"the dashboard queries metrics no live /metrics has: {missing}"
    # A suffix must be the family type's own: _total on counters; _bucket, _sum, _count on histograms.
    allowed = {"": {"gauge"}, "_total": {"counter"}}
    allowed |= {suffix: {"histogram"} for suffix in ("_bucket", "_sum", "_count")}
    for name in queried:
        family = live[name]
        assert live_types[family] in allowed.get(name[len(family) :], set()), name


@pytest.fixture
def two_workers(service_env: dict[str, str], django_db_setup: None, tmp_path: Path) -> Iterator[DaphneServer]:
    with DaphneServer.running_ws_env({**service_env, "WS_WORKERS": "2"}, tmp_path / "ws-workers.log") as server:
        yield server


@pytest.mark.slow
async def test_the_ws_supervisor_serves_the_sum_of_its_workers(two_workers: DaphneServer) -> None:
    users = await sync_to_async(make_users)("mw", 12)
    keys = [await sync_to_async(session_key_for)(user) for user in users]
    before = await ascrape(two_workers.metrics_url)
    sockets = []
    try:
        for key in keys:
            ws = await open_ws(two_workers.ws_url, cookie=f"sessionid={key}")
            assert (await recv_json(ws))["type"] == "welcome"
            sockets.append(ws)

        async def all_open() -> None:
            now = await ascrape(two_workers.metrics_url)
            assert now.value("ws_connections_open") == len(keys)
            assert delta(now, before, "ws_connection_attempts_total", outcome="accepted") == len(keys)
            assert delta(now, before, "ws_messages_sent_total", type="welcome") == len(keys)

        await eventually(all_open)
    finally:
        for ws in sockets:
            await ws.close()

    async def all_closed() -> None:
        assert (await ascrape(two_workers.metrics_url)).value("ws_connections_open") == 0

    await eventually(all_closed)


# -- in-process checks (the full ASGI stack, default registry) ----------------------


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _connected(username: str) -> tuple[WebsocketCommunicator, int]:
    user = await sync_to_async(make_user)(username)
    communicator = ws_communicator(session_key=await sync_to_async(session_key_for)(user))
    connected, _ = await communicator.connect()
    assert connected
    assert (await receive_message(communicator))["type"] == "welcome"
    return communicator, user.pk


async def test_unknown_and_invalid_frames_are_bounded_labels() -> None:
    communicator, user_id = await _connected("carol")
    unknown_type = f"x-{secrets.token_hex(8)}"
    before = {
        "unknown": _sample("ws_messages_received_total", type="unknown"),
        "invalid": _sample("ws_messages_received_total", type="invalid"),
        "unknown_type": _sample("ws_error_frames_total", code="unknown_type"),
        "bad_message": _sample("ws_error_frames_total", code="bad_message"),
        "sent_unknown": _sample("ws_messages_sent_total", type="unknown"),
        "sent_error": _sample("ws_messages_sent_total", type="error"),
    }
    await send_message(communicator, {"type": unknown_type})
    assert (await receive_message(communicator))["code"] == "unknown_type"
    await communicator.send_to(bytes_data=b"\x00binary")
    assert (await receive_message(communicator))["code"] == "bad_message"
    pushed = {"type": ["not", "a", "string"], "n": 1}
    await push_to_user(user_id, pushed)
    assert await receive_message(communicator) == pushed
    await communicator.disconnect()
    assert _sample("ws_messages_received_total", type="unknown") == before["unknown"] + 1
    assert _sample("ws_messages_received_total", type="invalid") == before["invalid"] + 1
    assert _sample("ws_error_frames_total", code="unknown_type") == before["unknown_type"] + 1
    assert _sample("ws_error_frames_total", code="bad_message") == before["bad_message"] + 1
    assert _sample("ws_messages_sent_total", type="unknown") == before["sent_unknown"] + 1
    assert _sample("ws_messages_sent_total", type="error") == before["sent_error"] + 2
    labels = {value for family in REGISTRY.collect() for sample in family.samples for value in sample.labels.values()}
    assert unknown_type not in labels


async def test_rate_limited_frames_and_floods_are_counted(settings: SettingsWrapper) -> None:
    settings.WS_RATE_LIMIT_PER_SECOND = 0.1
    settings.WS_RATE_LIMIT_BURST = 1
    settings.WS_RATE_LIMIT_STRIKES = 3
    communicator, _ = await _connected("dave")
    errors = _sample("ws_error_frames_total", code="rate_limited")
    floods = _sample("ws_connection_attempts_total", outcome="rate_limited")
    await send_message(communicator, {"type": "ping"})
    assert (await receive_message(communicator))["type"] == "pong"
    for _ in range(3):
        await send_message(communicator, {"type": "ping"})
    assert [(await receive_message(communicator))["code"] for _ in range(2)] == ["rate_limited"] * 2
    assert (await communicator.receive_output(3))["code"] == 1008
    await communicator.wait(3)
    assert _sample("ws_error_frames_total", code="rate_limited") == errors + 2
    assert _sample("ws_connection_attempts_total", outcome="rate_limited") == floods + 1


async def test_a_drain_is_in_progress_until_its_connections_are_cleaned_up() -> None:
    communicator, _ = await _connected("erin")
    assert _sample("ws_connections_open") >= 1
    open_before = _sample("ws_connections_open")
    draining_refused = _sample("ws_connection_attempts_total", outcome="draining")
    drain = asyncio.create_task(registry.drain(5))
    try:
        closing = await communicator.receive_output(3)
        assert closing == {"type": "websocket.close", "code": 1012, "reason": "server restarting, reconnect"}
        assert _sample("ws_drains_in_progress") == 1
        late = ws_communicator()
        connected, _ = await late.connect()
        assert connected  # accepted only to be closed with 1012 at once
        assert (await late.receive_output(3))["code"] == 1012
        assert _sample("ws_connection_attempts_total", outcome="draining") == draining_refused + 1
        await communicator.disconnect()
        assert await drain is True
        assert _sample("ws_drains_in_progress") == 0
        assert _sample("ws_connections_open") == open_before - 1
    finally:
        registry.draining = False  # this process's registry serves the rest of the session
        if not drain.done():
            drain.cancel()
