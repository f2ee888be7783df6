"""Entry point: one server in this process, or a supervisor of ``WS_WORKERS`` processes."""

from __future__ import annotations

import logging
import os

from ws_service.launcher.options import ServerOptions
from ws_service.launcher.supervisor import LISTEN_FD_VARIABLE, Supervisor


def _configure_django_logging() -> None:
    """The supervisor never imports the application, so it sets up Django (settings, LOGGING) itself."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shared.settings")
    django.setup(set_prefix=False)


def serve(options: ServerOptions, listen_fd: int | None) -> None:
    if options.metrics_port and listen_fd is None:
        from shared.metrics_server import start_metrics_server

        start_metrics_server(options.metrics_port, options.metrics_bind)
    if options.server == "uvicorn":
        from ws_service.launcher import uvicorn_backend

        uvicorn_backend.run(options, listen_fd)
    else:
        from ws_service.launcher import daphne_backend

        daphne_backend.run(options, listen_fd)


def main() -> int:
    options = ServerOptions.from_env()
    inherited = os.environ.get(LISTEN_FD_VARIABLE)
    if inherited is not None:
        serve(options, int(inherited))  # a worker of a supervisor
        return 0
    if options.workers == 1:
        serve(options, None)
        return 0
    _configure_django_logging()
    logging.getLogger("ws.supervisor").debug("starting %d workers", options.workers)
    return Supervisor(options).run()
