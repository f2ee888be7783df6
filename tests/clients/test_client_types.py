"""The clients' lists of frame types against the server's registry (ws_service/frames.py)."""

from __future__ import annotations

import re
from pathlib import Path

from ws_service.consumers import ConnectionConsumer
from wsclient.client import REPLY_TYPES

JS_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "src" / "ws-client.js"


def test_the_clients_know_only_frame_types_the_server_sends() -> None:
    assert set(REPLY_TYPES) <= ConnectionConsumer.frames.sent
    source = JS_CLIENT.read_text()
    listed = re.search(r"EVENT_FRAME_TYPES = new Set\(\[(.*?)\]\)", source, re.S)
    assert listed is not None, "EVENT_FRAME_TYPES not found in the JS client"
    js_types = set(re.findall(r'"([a-z_]+)"', listed.group(1)))
    assert js_types
    assert js_types <= ConnectionConsumer.frames.sent
