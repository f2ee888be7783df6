"""Run the ws service: ``python -m ws_service`` (the ws image's command).

Starts Daphne for ``ws_service.asgi:application`` with its timeouts set
deliberately from the environment instead of Daphne's CLI defaults, whose 5 s
handshake timeout drops connects during a burst (README: configuration).
"""

from __future__ import annotations

from shared.env import env_bool, env_int, env_str

APPLICATION = "ws_service.asgi:application"


def daphne_args() -> list[str]:
    """Daphne's command line for the current environment."""
    args = [
        "--bind", env_str("WS_BIND", "0.0.0.0"),  # noqa: S104 - a container listens on all interfaces
        "--port", str(env_int("WS_PORT", 8001, minimum=1, maximum=65535)),
        # Time from TCP accept until the application accepts the socket (auth included).
        "--websocket_connect_timeout", str(env_int("WS_HANDSHAKE_TIMEOUT", 30, minimum=1)),
        # Server pings keep idle sockets alive through proxies and detect dead peers.
        "--ping-interval", str(env_int("WS_PING_INTERVAL", 20, minimum=1)),
        "--ping-timeout", str(env_int("WS_PING_TIMEOUT", 30, minimum=1)),
        # Upper bound on a connection's life; clients reconnect and resubscribe.
        "--websocket_timeout", str(env_int("WS_MAX_CONNECTION_AGE", 86400, minimum=-1)),
        "--application-close-timeout", str(env_int("WS_APPLICATION_CLOSE_TIMEOUT", 10, minimum=1)),
    ]  # fmt: skip
    if env_bool("WS_PROXY_HEADERS", False):
        args.append("--proxy-headers")
    args.append(APPLICATION)
    return args


def main() -> None:
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(daphne_args())


if __name__ == "__main__":
    main()
