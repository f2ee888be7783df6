"""Both services' logs on real processes: JSON lines with context, and never a query string or ticket."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.support.live import fetch_ticket, login, open_ws, recv_json, recv_type, send_json
from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user

pytestmark = pytest.mark.django_db(transaction=True)

REQUIRED = ("timestamp", "level", "service", "logger", "message", "user_id")
RFC3339_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# "?name=" anywhere: the start of a query string.
QUERY_STRING = re.compile(r"\?[A-Za-z0-9_.~%-]+=")
TOPIC = "room.log-check"


def _env(service_env: dict[str, str]) -> dict[str, str]:
    # SERVICE_NAME unset: each process must name itself; LOG_FORMAT explicitly the production format.
    return {key: value for key, value in service_env.items() if key != "SERVICE_NAME"} | {"LOG_FORMAT": "json"}


# The ws launcher's variants: Daphne (the default), Uvicorn, and a supervisor of two workers.
WS_VARIANTS = {
    "daphne": {},
    "uvicorn": {"WS_SERVER": "uvicorn"},
    "two-workers": {"WS_WORKERS": "2"},
}


@pytest.fixture(params=list(WS_VARIANTS))
def servers(
    request: pytest.FixtureRequest, service_env: dict[str, str], django_db_setup: None, tmp_path: Path
) -> Iterator[tuple[DaphneServer, DaphneServer]]:
    """A web and a ws process of their own, so their log files hold only this test's lines."""
    web = DaphneServer.web(_env(service_env), tmp_path / "web.log")
    ws = DaphneServer.ws(_env(service_env) | WS_VARIANTS[request.param], tmp_path / "ws.log")
    try:
        web.start()
        ws.start()
        yield web, ws
    finally:
        web.stop()
        ws.stop()


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _entries(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in _lines(path):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}: not a JSON line: {line!r}")
        assert isinstance(entry, dict), f"{path.name}: not a JSON object: {line!r}"
        entries.append(entry)
    return entries


async def _wait_for_line(path: Path, *needles: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not any(all(needle in line for needle in needles) for line in _lines(path)):
        assert time.monotonic() < deadline, f"no line with {needles} in {path.name}: {_lines(path)[-5:]}"
        await asyncio.sleep(0.1)


async def test_json_lines_with_context_and_no_query_strings(servers: tuple[DaphneServer, DaphneServer]) -> None:
    web, ws_server = servers
    alice = await sync_to_async(make_user)("alice")
    client = await login(web.http_url, "alice", PASSWORD)
    ticket = (await fetch_ticket(client))["ticket"]
    query_secret = secrets.token_hex(8)
    # Requests with query strings: an API call, a 404 and a probe.
    for path in (f"/api/whoami?token={query_secret}&x=1", f"/no-such-page?token={query_secret}"):
        await client.get(path)
    await client.get(f"/healthz?token={query_secret}")

    ws = await open_ws(ws_server.ws_url, ticket=ticket)
    welcome = await recv_json(ws)
    connection_id = welcome["connection_id"]
    await send_json(ws, {"type": "subscribe", "topic": TOPIC})
    assert (await recv_type(ws, "subscribed"))["topic"] == TOPIC
    await send_json(ws, {"type": "publish", "topic": TOPIC, "text": "hello logs", "ref": "r1"})
    await recv_type(ws, "ack")
    await ws.close()
    # A forged ticket is refused (4401); it must not be logged either.
    forged = secrets.token_urlsafe(24)
    refused = await open_ws(ws_server.ws_url, ticket=forged)
    await refused.wait_closed()
    await _wait_for_line(ws_server.log_path, connection_id, "disconnected")
    await client.aclose()
    web.stop()
    ws_server.stop()

    web_entries, ws_entries = _entries(web.log_path), _entries(ws_server.log_path)
    assert web_entries
    assert ws_entries
    for service, entries, context_key in (("web", web_entries, "request_id"), ("ws", ws_entries, "connection_id")):
        for entry in entries:
            missing = [field for field in (*REQUIRED, context_key) if field not in entry]
            assert not missing, f"{service} line without {missing}: {entry}"
            assert entry["service"] == service, entry
            assert RFC3339_UTC_MS.fullmatch(entry["timestamp"]), entry
            assert entry["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, entry

    # The connection's lines carry its id and its user; topic lines name the topic.
    mine = [entry for entry in ws_entries if entry["connection_id"] == connection_id]
    messages = " | ".join(entry["message"] for entry in mine)
    assert any(entry["message"] == "connected" for entry in mine), messages
    assert any("disconnected" in entry["message"] for entry in mine), messages
    assert all(entry["user_id"] == alice.pk for entry in mine), mine
    assert all(entry["topic"] == TOPIC for entry in mine if "topic" in entry), mine

    # The web access lines: path only, with request id and user.
    access = [entry for entry in web_entries if entry["logger"] == "web.access"]
    whoami = [entry for entry in access if entry.get("path") == "/api/whoami"]
    assert whoami, access
    assert whoami[0]["user_id"] == alice.pk
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", whoami[0]["request_id"] or "")
    assert whoami[0]["status"] == 200
    assert any(entry.get("path") == "/no-such-page" for entry in access), access

    # Neither a ticket nor any query string, anywhere in either process's output.
    for log_path in (web.log_path, ws_server.log_path):
        text = log_path.read_text(encoding="utf-8", errors="replace")
        for secret in (ticket, forged, query_secret):
            assert secret not in text, f"{secret!r} logged in {log_path.name}"
        assert "ticket=" not in text, f"a ticket parameter logged in {log_path.name}"
        found = QUERY_STRING.search(text)
        assert not found, f"a query string logged in {log_path.name}: {found}"
