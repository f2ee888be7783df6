"""The clients' lists of frame types against the server's registry (ws_service/frames.py).

A client lists the frames of optional features (presence) apart from its core
types: a server whose optional feature was deleted sends none of them, and the
checks below must keep holding then (docs/extending.md, "Client frame types").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ws_service.consumers import ConnectionConsumer
from wsclient.client import OPTIONAL_REPLY_TYPES, REPLY_TYPES

JS_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "src" / "ws-client.js"


def _js_list(name: str, pattern: str) -> set[str]:
    listed = re.search(pattern, JS_CLIENT.read_text(), re.S)
    assert listed is not None, f"{name} not found in the JS client"
    types = set(re.findall(r'"([a-z_]+)"', listed.group(1)))
    assert types, f"{name} lists no type"
    return types


def _js_optional() -> set[str]:
    return _js_list("OPTIONAL_FRAME_TYPES", r"OPTIONAL_FRAME_TYPES = \[(.*?)\];")


def _js_core() -> set[str]:
    """The types EVENT_FRAME_TYPES lists itself (the optional ones are spread into it)."""
    return _js_list("EVENT_FRAME_TYPES", r"EVENT_FRAME_TYPES = new Set\(\[(.*?)\]\)")


def _client_checks(sent: set[str]) -> None:
    """Every core type of each client is sent by the server; every type the server sends is a JS event."""
    assert sent >= REPLY_TYPES - OPTIONAL_REPLY_TYPES
    assert _js_core() <= sent
    assert sent <= _js_core() | _js_optional(), "add the new frame type to the JS client's EVENT_FRAME_TYPES"


def test_the_clients_know_only_frame_types_the_server_sends() -> None:
    _client_checks(set(ConnectionConsumer.frames.sent))


@pytest.mark.parametrize("client", ["python", "js"])
def test_the_checks_hold_for_a_server_without_the_optional_features(client: str) -> None:
    optional = OPTIONAL_REPLY_TYPES if client == "python" else _js_optional()
    assert optional, "the client declares no optional feature types"
    _client_checks(set(ConnectionConsumer.frames.sent) - optional)


def test_optional_types_are_not_listed_again_as_core_types() -> None:
    assert not _js_core() & _js_optional()
