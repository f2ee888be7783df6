"""The ws service's HTTP side: health only."""

from __future__ import annotations

import json

import pytest
from channels.testing import HttpCommunicator
from django.test import override_settings

from tests.support.servers import free_port


async def _get(
    path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[str, object]]:
    from ws_service.asgi import application  # imported late: it sets Django up

    response = await HttpCommunicator(application, method, path, headers=headers).get_response(timeout=5)
    return response["status"], json.loads(response["body"]) if response["body"] else {}


async def test_liveness_makes_no_external_calls() -> None:
    # No database or Redis fixture: liveness must not need either.
    assert await _get("/healthz") == (200, {"status": "ok"})


@pytest.mark.django_db(transaction=True)
async def test_readiness_checks_database_and_channel_layer(service_env: dict[str, str]) -> None:
    status, body = await _get("/readyz")
    assert status == 200, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["database"]["ok"] is True
    assert checks["channel_layer"]["ok"] is True


@pytest.mark.django_db(transaction=True)
async def test_readiness_503_when_the_channel_layer_is_down(service_env: dict[str, str]) -> None:
    from tests.conftest import point_channel_layer_at

    with override_settings():
        point_channel_layer_at(f"redis://127.0.0.1:{free_port()}/0")
        status, body = await _get("/readyz")
    point_channel_layer_at(service_env["REDIS_URL"])
    assert status == 503
    assert body["status"] == "unavailable"


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("GET", "/admin/"), ("POST", "/healthz"), ("GET", "/ws/")])
async def test_everything_else_is_404(method: str, path: str) -> None:
    status, body = await _get(path, method)
    assert status == 404
    assert body["error"] == "not_found"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_through_a_proxy_are_404(path: str) -> None:
    """A request that carries X-Forwarded-For came through a proxy: probes are for direct callers."""
    status, body = await _get(path, headers=[(b"x-forwarded-for", b"203.0.113.9")])
    assert status == 404
    assert body["error"] == "not_found"
