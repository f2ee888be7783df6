"""Run the ws application under Uvicorn (``WS_SERVER=uvicorn``): websockets-sansio on uvloop."""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import uvicorn

from ws_service.launcher.drain import drain
from ws_service.launcher.options import ServerOptions

logger = logging.getLogger("ws.server")


class DrainingServer(uvicorn.Server):
    """Uvicorn's server with the ws service's drain in front of its own shutdown.

    Uvicorn on SIGTERM closes every socket with 1012 at once; here the first
    signal drains first (readiness 503, handshakes refused, each consumer's
    cleanup run), then Uvicorn shuts down what is left.
    """

    def __init__(self, config: uvicorn.Config, drain_timeout: float) -> None:
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._drain_task is not None:
            super().handle_exit(sig, frame)  # not serving yet, or a second signal: Uvicorn's own exit
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    def _stop_listening(self) -> None:
        for server in getattr(self, "servers", []):
            server.close()  # Uvicorn's own shutdown closes them again (idempotent)

    async def _drain_then_exit(self) -> None:
        try:
            await drain(self.drain_timeout, self._stop_listening)
        finally:
            self.should_exit = True


def run(options: ServerOptions, listen_fd: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and stop."""
    from ws_service import lazy_log_args, output_budget, receive_queue, uvicorn_upgrade
    from ws_service.asgi import application
    from ws_service.launcher import gc_tuning

    output_budget.install_uvicorn()
    lazy_log_args.install_uvicorn()
    receive_queue.install_uvicorn()
    uvicorn_upgrade.install()

    # Uvicorn logs every WebSocket open and close at INFO; the consumer logs its own lines.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    config = uvicorn.Config(options.application(application), **options.uvicorn_kwargs(listen_fd))
    server = DrainingServer(config, options.drain_timeout)
    gc_tuning.tune(options.gc_threshold)
    logger.info("ws service (uvicorn) listening on %s:%s", options.bind, options.port)
    server.run()
