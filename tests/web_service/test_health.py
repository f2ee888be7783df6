"""/healthz and /readyz of the web service."""

from __future__ import annotations

import pytest
from django.test import AsyncClient, Client, override_settings

from shared.health import clear_cache
from tests.support.servers import free_port


@pytest.fixture(autouse=True)
def _no_cached_readiness() -> None:
    """Each test sees its own checks' results, not the previous test's (cached for a second)."""
    clear_cache()


def test_liveness_makes_no_database_call_and_ignores_the_host() -> None:
    # No django_db mark: any database access here would raise.
    response = Client().get("/healthz", headers={"Host": "10.1.2.3:8000"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db(transaction=True)
def test_readiness_checks_database_and_redis(service_env: dict[str, str]) -> None:
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True


@pytest.mark.django_db(transaction=True)
async def test_readiness_is_503_when_redis_is_unreachable(service_env: dict[str, str]) -> None:
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        response = await AsyncClient().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"] == "unavailable"  # a fixed word: the exception goes to the log
    assert body["checks"]["database"]["ok"] is True


def test_other_methods_are_not_probes() -> None:
    response = Client().post("/healthz")
    assert response.status_code != 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/readyz/"])
def test_probes_through_a_proxy_are_404(path: str) -> None:
    """Public proxies (compose's nginx, ingress-nginx) set X-Forwarded-For: they never get a probe answer."""
    response = Client().get(path, headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 404
    assert b"database" not in response.content
