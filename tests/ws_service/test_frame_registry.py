"""The one registry of message types against the AsyncAPI document, the metrics labels and the clients."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.protocol_schema import frame_types
from ws_service import metrics
from ws_service.consumers import FEATURES, ConnectionConsumer
from ws_service.frames import FrameRegistry, frames
from wsclient.client import REPLY_TYPES

ROOT = Path(__file__).resolve().parents[2]
JS_CLIENT = ROOT / "clients" / "js" / "src" / "ws-client.js"


def test_every_feature_module_is_loaded() -> None:
    modules = sorted(p.stem for p in (ROOT / "ws_service" / "features").glob("*.py") if not p.stem.startswith("_"))
    assert modules == FEATURES
    assert ConnectionConsumer.frames is frames


def test_the_asyncapi_document_lists_exactly_the_registered_types() -> None:
    assert frame_types("client") == set(frames.requests)
    assert frame_types("server") == frames.sent


def test_every_registered_type_has_its_metrics_label() -> None:
    assert set(frames.requests) <= set(metrics.RECEIVED)
    assert frames.sent <= set(metrics.SENT)


def test_the_clients_know_only_frame_types_the_server_sends() -> None:
    assert set(REPLY_TYPES) <= frames.sent
    source = JS_CLIENT.read_text()
    listed = re.search(r"EVENT_FRAME_TYPES = new Set\(\[(.*?)\]\)", source, re.S)
    assert listed is not None, "EVENT_FRAME_TYPES not found in the JS client"
    js_types = set(re.findall(r'"([a-z_]+)"', listed.group(1)))
    assert js_types
    assert js_types <= frames.sent


def test_a_type_cannot_be_registered_twice() -> None:
    registry = FrameRegistry()

    async def handler(consumer: object, message: dict[str, object]) -> None:
        return None

    registry.request("hello", handler)
    with pytest.raises(ValueError, match="twice"):
        registry.request("hello", handler)
    registry.event("greeting.sent", handler)
    with pytest.raises(ValueError, match="twice"):
        registry.event("greeting.sent", handler)
