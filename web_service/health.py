"""``/healthz`` and ``/readyz`` for the web service, and the request metrics.

Answered by the first middleware in the stack, before host validation,
sessions and authentication: an orchestrator probes by pod IP (not in
ALLOWED_HOSTS), and liveness must not touch the database. Being first, it
also counts every request in the ``web_*`` metrics (``web_service/metrics.py``).

Probes answer direct callers only. A request that came through a reverse
proxy (it carries ``X-Forwarded-For``, which the compose proxy and
ingress-nginx always set) falls through to URL routing and gets 404, so
neither the public proxy nor an Ingress serves readiness (and its database
work) to the internet. Orchestrators probe the container directly.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse, JsonResponse

from shared.health import check_database, check_redis, run_checks
from web_service import metrics
from web_service.dual_mode import DualModeMiddleware

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
PROBE_ROUTES = {LIVENESS_PATH: "healthz", READINESS_PATH: "readyz"}
# Set by every reverse proxy in front of the service: a probe carrying it came from outside.
PROXIED_HEADER = "HTTP_X_FORWARDED_FOR"


async def health_response(path: str) -> JsonResponse:
    """The response for a probe path; liveness makes no external calls."""
    if path == LIVENESS_PATH:
        body: dict[str, Any] = {"status": "ok"}
        status = 200
    else:
        ok, body = await run_checks({"database": check_database, "redis": check_redis})
        status = 200 if ok else 503
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _probe_path(request: HttpRequest) -> str | None:
    """The probe path a direct caller asked for; ``None`` for anything else or anything proxied."""
    path = request.path_info.rstrip("/") or "/"
    if path not in (LIVENESS_PATH, READINESS_PATH) or request.method not in ("GET", "HEAD"):
        return None
    if PROXIED_HEADER in request.META:
        return None
    return path


class HealthCheckMiddleware(DualModeMiddleware):
    """Answers the probe paths; passes every other request on; counts them all."""

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        metrics.REQUESTS_IN_PROGRESS.inc()
        try:
            path = _probe_path(request)
            if path is not None:
                probe: HttpResponse = async_to_sync(health_response)(path)
                metrics.observe(request, probe, started, route=PROBE_ROUTES[path])
                return probe
            response: HttpResponse = self.get_response(request)
            metrics.observe(request, response, started)
            return response
        finally:
            metrics.REQUESTS_IN_PROGRESS.dec()

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        metrics.REQUESTS_IN_PROGRESS.inc()
        try:
            path = _probe_path(request)
            if path is not None:
                probe = await health_response(path)
                metrics.observe(request, probe, started, route=PROBE_ROUTES[path])
                return probe
            response: HttpResponse = await self.get_response(request)
            metrics.observe(request, response, started)
            return response
        finally:
            metrics.REQUESTS_IN_PROGRESS.dec()
