"""Drain this process's connections: readiness 503, new handshakes refused, every socket 1012."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ws_service.registry import registry

logger = logging.getLogger("ws.server")


async def drain(grace: float, stop_listening: Callable[[], None]) -> bool:
    """Stop accepting, close every connection with 1012 and wait for their cleanup.

    Closing the listening socket first makes reconnecting clients (and the
    proxy's next-upstream retry) go to another replica instead of this one.
    ``False`` if a drain already ran.
    """
    if registry.draining:
        return False
    try:
        stop_listening()
    except Exception:  # the drain itself must still run
        logger.exception("could not stop listening")
    count = len(registry.connections)
    logger.info("draining %d connections (grace %.1fs)", count, grace)
    if await registry.drain(grace):
        logger.info("drained %d connections; stopping", count)
    else:
        logger.warning("drain grace of %.1fs ran out with %d connections left", grace, len(registry.connections))
    return True
