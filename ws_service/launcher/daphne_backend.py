"""Run the ws application under Daphne (the default server)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from ws_service.launcher.drain import drain
from ws_service.launcher.options import ServerOptions

logger = logging.getLogger("ws.server")


def run(options: ServerOptions, listen_fd: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and stop."""
    from daphne.server import Server  # installs Twisted's asyncio reactor
    from twisted.internet import reactor

    from ws_service import (
        daphne_close,
        daphne_reaper,
        daphne_timeouts,
        daphne_upgrade,
        input_budget,
        lazy_log_args,
        output_budget,
        receive_queue,
    )
    from ws_service.asgi import application
    from ws_service.launcher import gc_tuning

    lazy_log_args.install_daphne()
    daphne_close.install()
    daphne_timeouts.install()
    receive_queue.install_daphne()  # before the reaper, which wraps the method it replaces
    daphne_reaper.install()
    daphne_upgrade.install()
    output_budget.install_daphne()
    input_budget.install_daphne()
    server = Server(application=options.application(application), **options.daphne_kwargs(listen_fd))
    gc_tuning.tune(options.gc_threshold)
    ports: list[Any] = []
    announce = server.listen_success

    def remember(port: Any) -> None:
        ports.append(port)
        announce(port)

    server.listen_success = remember  # Daphne keeps no reference to its listening ports

    def stop_listening() -> None:
        for port in ports:
            port.stopListening()

    async def drain_and_stop() -> None:
        if await drain(options.drain_timeout, stop_listening):
            server.stop()

    def install_signal_handlers() -> None:
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(drain_and_stop()))

    reactor.callWhenRunning(install_signal_handlers)
    # An oversize message gets a 1009 close frame instead of a dropped TCP connection (1006).
    # setProtocolOptions resets allowNullOrigin to False unless passed: keep Daphne's True,
    # so a "null" Origin reaches OriginValidator and gets its documented 403.
    reactor.callWhenRunning(lambda: server.ws_factory.setProtocolOptions(failByDrop=False, allowNullOrigin=True))
    logger.info("ws service (daphne) listening on %s:%s", options.bind, options.port)
    server.run()
