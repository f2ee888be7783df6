"""Everything the launcher reads from the environment (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured

from shared.env import env_bool, env_float, env_int, env_list, env_str
from shared.forwarded import DEFAULT as DEFAULT_TRUSTED_PROXIES
from shared.forwarded import trusted_proxies, with_trusted_proxy_headers

ServerName = Literal["daphne", "uvicorn"]
SERVERS: tuple[ServerName, ...] = ("daphne", "uvicorn")
APPLICATION = "ws_service.asgi:application"
LISTEN_BACKLOG = 2048


def _server_name() -> ServerName:
    name = env_str("WS_SERVER", "daphne").strip().lower()
    if name not in SERVERS:
        raise ImproperlyConfigured(f"WS_SERVER must be one of {', '.join(SERVERS)}, not {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """The ASGI server, its processes, timeouts and limits."""

    server: ServerName
    workers: int
    bind: str
    port: int
    handshake_timeout: int
    ping_interval: int
    ping_timeout: int
    max_connection_age: int
    application_close_timeout: int
    max_message_bytes: int
    proxy_headers: bool
    forwarded_allow_ips: tuple[str, ...]
    drain_timeout: float
    metrics_port: int
    metrics_bind: str
    gc_threshold: int

    @classmethod
    def from_env(cls) -> ServerOptions:
        bind = env_str("WS_BIND", "0.0.0.0")  # noqa: S104 - a container listens on all interfaces
        return cls(
            # Daphne is the default; Uvicorn (websockets-sansio, uvloop) runs the same application.
            server=_server_name(),
            # Server processes sharing one listening socket; match the container's CPUs.
            workers=env_int("WS_WORKERS", 1, minimum=1, maximum=64),
            bind=bind,
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
            # The peers whose X-Forwarded-For/-Proto count (addresses, networks, host names, or "*").
            forwarded_allow_ips=trusted_proxies(env_list("FORWARDED_ALLOW_IPS", list(DEFAULT_TRUSTED_PROXIES))),
            # Below compose's stop_grace_period (20 s) and Kubernetes' terminationGracePeriodSeconds.
            drain_timeout=env_float("WS_DRAIN_TIMEOUT", 10.0, minimum=0.5),
            # The internal Prometheus listener; 0 turns it off (the images set 9100).
            metrics_port=env_int("METRICS_PORT", 0, minimum=0, maximum=65535),
            # Where /metrics listens: the server's address unless set (compose: 127.0.0.1).
            metrics_bind=env_str("METRICS_BIND", bind),
            # Allocations between young garbage collections (ws_service.launcher.gc_tuning); 0: Python's 2,000.
            gc_threshold=env_int("WS_GC_THRESHOLD", 0, minimum=0),
        )

    def application(self, application: Any) -> Any:
        """The ASGI application either server serves: with proxy headers, honoured from trusted peers only."""
        if not self.proxy_headers:
            return application
        return with_trusted_proxy_headers(application, self.forwarded_allow_ips)

    def daphne_kwargs(self, listen_fd: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``daphne.server.Server``; ``listen_fd`` is an inherited listening socket."""
        from daphne.endpoints import build_endpoint_description_strings

        if listen_fd is None:
            # Twisted listens with a backlog of 50: a connect burst overflows it and SYNs are
            # retried after 1 s. The supervisor's shared socket uses the same 2048 as Uvicorn.
            endpoints = [
                f"{endpoint}:backlog={LISTEN_BACKLOG}"
                for endpoint in build_endpoint_description_strings(host=self.bind, port=self.port)
            ]
        elif ":" in self.bind:
            # Daphne's "fd" endpoint adopts IPv4 sockets only.
            raise ImproperlyConfigured("WS_WORKERS > 1 with Daphne needs an IPv4 WS_BIND")
        else:
            endpoints = [f"fd:fileno={listen_fd}"]
        return {
            "endpoints": endpoints,
            "signal_handlers": False,  # SIGTERM/SIGINT drain instead (see daphne_backend)
            "websocket_connect_timeout": self.handshake_timeout,
            "websocket_handshake_timeout": self.handshake_timeout,
            "ping_interval": self.ping_interval,
            "ping_timeout": self.ping_timeout,
            "websocket_timeout": self.max_connection_age,
            "application_close_timeout": self.application_close_timeout,
            "websocket_max_message_size": self.max_message_bytes,
            "websocket_max_frame_size": self.max_message_bytes,
            # Daphne would take these headers from any peer: application() applies them instead.
            "proxy_forwarded_address_header": None,
            "proxy_forwarded_port_header": None,
            "proxy_forwarded_proto_header": None,
        }

    def uvicorn_kwargs(self, listen_fd: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.Config`` with the same limits and timeouts as Daphne's."""
        where: dict[str, Any] = {"fd": listen_fd} if listen_fd is not None else {"host": self.bind, "port": self.port}
        return {
            **where,
            "ws": "websockets-sansio",
            "loop": "uvloop",
            "http": "h11",
            "lifespan": "off",  # the application's ScopeTypeRouter (ws_service.app) has no lifespan handler
            "ws_max_size": self.max_message_bytes,  # larger messages: close 1009
            "ws_ping_interval": float(self.ping_interval),
            "ws_ping_timeout": float(self.ping_timeout),
            "ws_per_message_deflate": False,  # as Daphne: no compression (CPU per message)
            # Uvicorn's own handling takes addresses and networks only: application() applies
            # the headers instead (host names in FORWARDED_ALLOW_IPS too), as under Daphne.
            "proxy_headers": False,
            "access_log": False,  # its access lines carry query strings (tickets)
            "log_config": None,  # Django's LOGGING applies
            "server_header": False,
            # Connections left after the drain are closed by Uvicorn (1012) within this.
            "timeout_graceful_shutdown": max(1, int(self.application_close_timeout)),
        }
