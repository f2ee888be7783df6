"""Drain this process's connections: readiness 503, new handshakes refused, every socket 1012."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.exceptions import RedisError

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
    if await registry.drain(grace, lambda: _clean_up_process(grace)):
        logger.info("drained %d connections; stopping", count)
    else:
        logger.warning("drain grace of %.1fs ran out with %d connections left", grace, len(registry.connections))
    return True


async def _clean_up_process(within: float) -> None:
    """The process's state in Redis, dropped at once as its connections close (each one's cleanup then costs none).

    Each step starts eagerly (and ``Registry.drain`` starts this eagerly,
    before the closes): what it gives up is marked, and its requests are
    sent, before the first close frame, but the closes never wait for its
    answers. Concurrently, each in about one pipelined round trip: the node leaves every
    group, the slots are given back, features drop theirs (:data:`DRAIN_HOOK`;
    presence removes the entries and announces the leaves). Bounded by
    ``within`` (the drain's grace: the connections' own cleanup never waits
    for this one): if Redis fails or hangs, what is left expires by its TTL,
    as after a crash.
    """
    # Imported here: these import Django models, not loadable before the launcher has set Django up.
    from ws_service.connection_slots import get_slot_tracker
    from ws_service.frames import DRAIN_HOOK, frames
    from ws_service.node import get_node

    loop = asyncio.get_running_loop()
    steps = {
        "leave the groups": asyncio.eager_task_factory(loop, get_node().close()),
        "release the connection slots": asyncio.eager_task_factory(loop, get_slot_tracker().release_all()),
        "run the drain hooks": asyncio.eager_task_factory(loop, frames.emit(DRAIN_HOOK)),
    }
    try:
        async with asyncio.timeout(within):
            results = await asyncio.gather(*steps.values(), return_exceptions=True)
    except TimeoutError:
        logger.warning("drain cleanup took over %.1fs; what is left expires by its TTL", within)
        return
    for what, result in zip(steps, results, strict=True):
        if isinstance(result, (RedisError, OSError)):
            logger.warning("could not %s while draining (it expires by its TTL): %s", what, result)
        elif isinstance(result, BaseException):
            logger.error("could not %s while draining", what, exc_info=result)
