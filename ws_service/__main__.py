"""Run the ws service: ``python -m ws_service`` (the ws image's command).

Starts Daphne for ``ws_service.asgi:application`` with timeouts and limits set
deliberately from the environment (Daphne's CLI defaults include a 5 s
handshake timeout that drops connects during a burst), and drains on SIGTERM:

1. ``/readyz`` turns 503 and new WebSocket handshakes are refused (403);
2. every open connection is closed with 1012 ("service restart") and a reason;
3. each connection's cleanup (groups, presence) runs;
4. the process exits once all are done, or after ``WS_DRAIN_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from shared.env import env_bool, env_float, env_int, env_str

APPLICATION = "ws_service.asgi:application"
logger = logging.getLogger("ws.server")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Everything the launcher reads from the environment (README: configuration)."""

    bind: str
    port: int
    handshake_timeout: int
    ping_interval: int
    ping_timeout: int
    max_connection_age: int
    application_close_timeout: int
    max_message_bytes: int
    proxy_headers: bool
    drain_timeout: float

    @classmethod
    def from_env(cls) -> ServerOptions:
        return cls(
            bind=env_str("WS_BIND", "0.0.0.0"),  # noqa: S104 - a container listens on all interfaces
            port=env_int("WS_PORT", 8001, minimum=1, maximum=65535),
            # Time from TCP accept until the application accepts the socket (auth included).
            handshake_timeout=env_int("WS_HANDSHAKE_TIMEOUT", 30, minimum=1),
            # Server pings keep idle sockets alive through proxies and detect dead peers.
            ping_interval=env_int("WS_PING_INTERVAL", 20, minimum=1),
            ping_timeout=env_int("WS_PING_TIMEOUT", 30, minimum=1),
            # Upper bound on a connection's life; clients reconnect and resubscribe.
            max_connection_age=env_int("WS_MAX_CONNECTION_AGE", 86400, minimum=-1),
            application_close_timeout=env_int("WS_APPLICATION_CLOSE_TIMEOUT", 10, minimum=1),
            # Larger inbound messages are refused by the WebSocket layer with close code 1009.
            max_message_bytes=env_int("WS_MAX_MESSAGE_BYTES", 64 * 1024, minimum=1024),
            proxy_headers=env_bool("WS_PROXY_HEADERS", False),
            # Below compose's stop_grace_period (20 s) and Kubernetes' terminationGracePeriodSeconds.
            drain_timeout=env_float("WS_DRAIN_TIMEOUT", 10.0, minimum=0.5),
        )

    def daphne_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``daphne.server.Server``."""
        from daphne.endpoints import build_endpoint_description_strings

        return {
            "endpoints": build_endpoint_description_strings(host=self.bind, port=self.port),
            "signal_handlers": False,  # SIGTERM/SIGINT drain instead (see main)
            "websocket_connect_timeout": self.handshake_timeout,
            "websocket_handshake_timeout": self.handshake_timeout,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "websocket_timeout": self.max_connection_age,
            "application_close_timeout": self.application_close_timeout,
            "websocket_max_message_size": self.max_message_bytes,
            "websocket_max_frame_size": self.max_message_bytes,
            "proxy_forwarded_address_header": "X-Forwarded-For" if self.proxy_headers else None,
            "proxy_forwarded_port_header": "X-Forwarded-Port" if self.proxy_headers else None,
            "proxy_forwarded_proto_header": "X-Forwarded-Proto" if self.proxy_headers else None,
        }


async def drain_and_stop(server: Any, grace: float) -> None:
    """Drain every connection, then stop the reactor."""
    from ws_service.registry import registry

    if registry.draining:
        return
    count = len(registry.connections)
    logger.info("draining %d connections (grace %.1fs)", count, grace)
    finished = await registry.drain(grace)
    if finished:
        logger.info("drained %d connections; stopping", count)
    else:
        logger.warning("drain grace of %.1fs ran out with %d connections left", grace, len(registry.connections))
    server.stop()


def main() -> None:
    options = ServerOptions.from_env()
    from daphne.server import Server  # installs Twisted's asyncio reactor
    from twisted.internet import reactor

    from ws_service import daphne_close
    from ws_service.asgi import application

    daphne_close.install()
    server = Server(application=application, **options.daphne_kwargs())

    def install_signal_handlers() -> None:
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(
                signum, lambda: asyncio.ensure_future(drain_and_stop(server, options.drain_timeout))
            )

    reactor.callWhenRunning(install_signal_handlers)
    # An oversize message gets a 1009 close frame instead of a dropped TCP connection (1006).
    # setProtocolOptions resets allowNullOrigin to False unless passed: keep Daphne's True,
    # so a "null" Origin reaches OriginValidator and gets its documented 403.
    reactor.callWhenRunning(lambda: server.ws_factory.setProtocolOptions(failByDrop=False, allowNullOrigin=True))
    logger.info("ws service listening on %s:%s", options.bind, options.port)
    server.run()


if __name__ == "__main__":
    main()
