"""Prometheus metrics of the web service (docs/operations.md: Metrics), counted by ``HealthCheckMiddleware``.

Labels are bounded: the method is one of the standard ones (else ``other``),
the status is its class (``2xx`` …), and the route is the URL pattern that
matched (``api/topics/<str:topic>/messages``), never the raw path. Probes
are ``healthz``/``readyz``, WhiteNoise's files ``static``, anything no pattern
matched ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Final

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Gauge, Histogram

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD: Final = "other"
UNMATCHED: Final = "unmatched"
STATIC: Final = "static"

REQUESTS = Counter(
    "web_requests",
    "HTTP requests answered, by method, status class and route (URL pattern or probe name).",
    ["method", "status", "route"],
)
REQUEST_SECONDS = Histogram(
    "web_request_duration_seconds",
    "Time to answer an HTTP request (the whole middleware stack), by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REQUESTS_IN_PROGRESS = Gauge(
    "web_requests_in_progress",
    "HTTP requests being answered right now.",
    multiprocess_mode="livesum",
)


def method_label(request: HttpRequest) -> str:
    method = request.method or OTHER_METHOD
    return method if method in METHODS else OTHER_METHOD


def route_label(request: HttpRequest) -> str:
    """The matched URL pattern, ``static`` for static files, else ``unmatched``: never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return match.route or match.view_name or UNMATCHED
    static_url: str | None = settings.STATIC_URL
    if static_url and request.path.startswith(static_url):
        return STATIC
    return UNMATCHED


def observe(request: HttpRequest, response: HttpResponse, started: float, *, route: str | None = None) -> None:
    """Count one answered request (``route`` overrides the resolved one, e.g. for probes)."""
    method = method_label(request)
    label = route if route is not None else route_label(request)
    REQUESTS.labels(method, f"{response.status_code // 100}xx", label).inc()
    REQUEST_SECONDS.labels(method, label).observe(time.perf_counter() - started)
