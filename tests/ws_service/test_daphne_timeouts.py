"""Daphne's timeout sweep on the wheel: idle open sockets are checked when due, not every 2 s.

Real Daphne objects (its ``Server`` and ``WebSocketProtocol``), no running
reactor: the sweep is called with chosen clock values. The keepalive itself
(pings on time, dead peers closed) is tested against running servers in
tests/integration/test_keepalive.py.
"""

from __future__ import annotations

import time
from typing import Any

from ws_service.daphne_timeouts import SWEEP_SECONDS, TimeoutWheel

PING_INTERVAL = 20


def _server() -> Any:
    from daphne.server import Server

    # An endpoint it never listens on: the sweep is driven by hand.
    server = Server(application=None, endpoints=["tcp:port=0"], ping_interval=PING_INTERVAL, websocket_timeout=86400)
    server.connections = {}  # what Server.run() starts with
    return server


def _open_socket(server: Any, opened: float) -> Any:
    from daphne.ws_protocol import WebSocketProtocol

    protocol = WebSocketProtocol()
    protocol.server = server
    protocol.socket_opened = protocol.last_ping = opened
    protocol.state = protocol.STATE_OPEN
    server.protocol_connected(protocol)
    return protocol


def test_idle_open_sockets_are_checked_once_then_not_until_their_ping_is_due() -> None:
    server = _server()
    wheel = TimeoutWheel(server)
    start = time.time()
    sockets = [_open_socket(server, start) for _ in range(500)]
    for protocol in sockets:
        wheel.schedule(protocol, int(start // SWEEP_SECONDS) + 1)
    # Daphne's own sweep would call check_timeouts() 500 times every 2 s: 4,500 times in these 18 s.
    for sweep in range(1, 10):
        wheel.sweep(start + sweep * SWEEP_SECONDS)
    assert wheel.checks == 500  # the first sweep after connecting, then none before the ping is due
    assert all(protocol.last_ping == start for protocol in sockets)  # no ping went out early


def test_a_socket_still_connecting_is_checked_every_sweep_and_a_gone_one_is_forgotten() -> None:
    server = _server()
    wheel = TimeoutWheel(server)
    start = time.time()
    connecting = _open_socket(server, start)
    connecting.state = connecting.STATE_CONNECTING
    gone = _open_socket(server, start)
    for protocol in (connecting, gone):
        wheel.schedule(protocol, int(start // SWEEP_SECONDS) + 1)
    del server.connections[gone]  # reaped by Daphne's application checker
    for sweep in range(1, 6):
        wheel.sweep(start + sweep * SWEEP_SECONDS)
    assert wheel.checks == 5
    assert not any(gone in bucket for bucket in wheel.buckets.values())
