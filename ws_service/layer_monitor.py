"""Notices when Redis lost this process's channel-layer state, and restores it.

channels-redis keeps group membership in Redis. When Redis restarts without
persistence, or someone runs FLUSHALL, every group is gone: sockets stay open
but silently stop receiving. Each ws process keeps a sentinel key on every
Redis the layer uses (each of ``CHANNEL_LAYER_SHARDS``, else the one Redis).
Every ``WS_LAYER_CHECK_INTERVAL`` seconds, while it has connections, it
checks those keys. If Redis was unreachable, or the key is gone, the
process's node (``ws_service.node``) re-adds every group it is in, in one
pipelined round trip per shard. Features' own data (kept alive by their
per-process refresh) comes back on their next refresh.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from ws_service.loop_local import LoopLocal, process_task
from ws_service.node import get_node
from ws_service.registry import registry

logger = logging.getLogger("ws.layer")

SENTINEL_TTL_SECONDS = 3600


class LayerMonitor:
    """One per process; ``down`` is True while Redis is unreachable."""

    def __init__(self) -> None:
        self.down = False
        self.sentinel = f"{settings.CHANNEL_LAYER_PREFIX}:alive:{uuid.uuid4().hex}"
        # Until the first successful check has set the sentinel, its absence means nothing.
        self._sentinel_planted = False
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = process_task(self._run(), "layer-monitor")

    async def check(self) -> None:
        """One round: detect an outage or lost state; restore groups when Redis is back."""
        layer: Any = get_channel_layer()
        shards = [layer.connection(index) for index in range(layer.ring_size)]
        try:
            alive = all([await shard.exists(self.sentinel) for shard in shards])
        except (RedisError, OSError) as exc:
            if not self.down:
                logger.error("Redis unreachable; connections stay open, publishing is unavailable: %s", exc)
            self.down = True
            return
        if self.down or (self._sentinel_planted and not alive):
            reason = "Redis is back" if self.down else "Redis lost this process's state (restart or FLUSHALL)"
            node = get_node()
            logger.warning(
                "%s: restoring %d groups of %d connections", reason, len(node.local), len(registry.connections)
            )
            await node.rejoin()
        else:
            await get_node().refresh_if_due()
        for shard in shards:
            await shard.set(self.sentinel, "1", ex=SENTINEL_TTL_SECONDS)
        self._sentinel_planted = True
        self.down = False

    async def _run(self) -> None:
        interval: float = settings.WS_LAYER_CHECK_INTERVAL
        while registry.connections:
            try:
                await self.check()
            except (RedisError, OSError) as exc:
                self.down = True
                logger.warning("channel-layer check failed: %s", exc)
            await asyncio.sleep(interval)


_monitors: LoopLocal[LayerMonitor] = LoopLocal(LayerMonitor)


def get_monitor() -> LayerMonitor:
    """The monitor of the running event loop (one per ws process)."""
    return _monitors.get()
