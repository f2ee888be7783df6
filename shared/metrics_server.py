"""The internal Prometheus listener: ``GET /metrics`` on ``METRICS_PORT`` (docs/operations.md: Metrics).

It runs in a daemon thread beside the server, on its own port, which the
public proxy never routes to (the proxy and the Ingress only reach the app
ports 8000/8001). Any other path is 404.

With several server processes per container (``WS_WORKERS`` > 1), the
launcher gives every worker one ``PROMETHEUS_MULTIPROC_DIR`` before it imports
anything, so each writes its metrics to its own files, and serves this port
from the parent: the exposition is then a :class:`MultiProcessCollector` over
that directory (counters and histograms summed over every worker that ever
ran, ``livesum`` gauges over the live ones). Without the variable, the
process serves its own default registry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger("metrics")

METRICS_PATH = "/metrics"
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def metrics_registry() -> Collector:
    """What ``/metrics`` exposes: every worker's files in multi-process mode, else this process's registry."""
    directory = os.environ.get(MULTIPROC_VARIABLE)
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def metrics_app(registry: Collector) -> WSGIApp:
    """A WSGI app serving ``registry`` at ``/metrics`` only (prometheus_client's own app answers any path)."""
    exposition: WSGIApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: metrics are at /metrics\n"]
        return exposition(environ, start_response)

    return app


class _SilentHandler(WSGIRequestHandler):
    """No access line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One daemon thread per scrape, so a slow scraper never blocks the next one."""

    daemon_threads = True


def _server_class(bind: str, port: int) -> type[_ThreadingServer]:
    """The server class with the address family of ``bind`` (IPv4 or IPv6)."""
    family = socket.getaddrinfo(bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]

    class Server(_ThreadingServer):
        address_family = family

    return Server


def start_metrics_server(port: int, bind: str) -> WSGIServer:
    """Serve ``GET /metrics`` on ``bind:port`` from a daemon thread; returns the server (already serving).

    Call it once per container: from the ws launcher's supervisor when there
    are several workers (after setting ``PROMETHEUS_MULTIPROC_DIR``), else from
    the server process itself.
    """
    registry = metrics_registry()
    server = make_server(bind, port, metrics_app(registry), _server_class(bind, port), handler_class=_SilentHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="metrics-server")
    thread.start()
    mode = "multi-process" if registry is not REGISTRY else "single-process"
    logger.info("metrics (%s) on http://%s:%s%s", mode, bind, server.server_port, METRICS_PATH)
    return server
