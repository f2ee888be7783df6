"""Run the web service: ``python -m web_service`` (the web image's command).

Serves ``web_service.asgi:application`` with Daphne on ``WEB_BIND:WEB_PORT``
(default ``0.0.0.0:8000``), taking the client address and scheme from the
proxy's ``X-Forwarded-For``/``-Proto`` when the peer is one of
``FORWARDED_ALLOW_IPS`` (compose: the proxy service's name, resolved; from any other
peer they are ignored, see shared/forwarded.py). Daphne's own access log stays off: it
prints query strings, and the app's ``web.access`` lines are the access log.
With ``METRICS_PORT`` > 0, Prometheus metrics are served on that internal
port (``GET /metrics``) on ``METRICS_BIND`` (default ``WEB_BIND``), which no proxy routes to.
"""

from __future__ import annotations

import logging
import sys

from shared.env import env_int, env_list, env_str
from shared.forwarded import DEFAULT as DEFAULT_TRUSTED_PROXIES
from shared.forwarded import trusted_proxies, with_trusted_proxy_headers

logger = logging.getLogger("web.server")


def main() -> int:
    bind = env_str("WEB_BIND", "0.0.0.0")  # noqa: S104 - a container listens on all interfaces
    port = env_int("WEB_PORT", 8000, minimum=1, maximum=65535)
    metrics_port = env_int("METRICS_PORT", 0, minimum=0, maximum=65535)
    metrics_bind = env_str("METRICS_BIND", bind)
    trusted = trusted_proxies(env_list("FORWARDED_ALLOW_IPS", list(DEFAULT_TRUSTED_PROXIES)))

    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server  # installs Twisted's asyncio reactor: before the application

    from web_service.asgi import application  # sets Django up (settings, LOGGING)

    if metrics_port:
        from shared.metrics_server import start_metrics_server

        start_metrics_server(metrics_port, metrics_bind)
    server = Server(
        # Daphne's own proxy-header options would trust every peer: off, and the
        # headers applied only from FORWARDED_ALLOW_IPS instead.
        application=with_trusted_proxy_headers(application, trusted),
        endpoints=build_endpoint_description_strings(host=bind, port=port),
        action_logger=None,  # no Daphne access log: it would print query strings
    )
    logger.info("web service listening on %s:%s", bind, port)
    server.run()
    return 1 if server.abort_start else 0


if __name__ == "__main__":
    sys.exit(main())
