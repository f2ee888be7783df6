"""The one registry of message types against the AsyncAPI document, the metrics labels and the clients."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.protocol_schema import frame_types
from ws_service import metrics
from ws_service.consumers import FEATURES, ConnectionConsumer
from ws_service.frames import FrameRegistry, frames

ROOT = Path(__file__).resolve().parents[2]


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
