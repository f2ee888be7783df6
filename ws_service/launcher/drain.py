"""Drain this process's connections: readiness 503, new handshakes refused, every socket 1012."""

from __future__ import annotations

import logging

from ws_service.registry import registry

logger = logging.getLogger("ws.server")


async def drain(grace: float) -> bool:
    """Close every connection with 1012 and wait for their cleanup; ``False`` if already draining."""
    if registry.draining:
        return False
    count = len(registry.connections)
    logger.info("draining %d connections (grace %.1fs)", count, grace)
    if await registry.drain(grace):
        logger.info("drained %d connections; stopping", count)
    else:
        logger.warning("drain grace of %.1fs ran out with %d connections left", grace, len(registry.connections))
    return True
