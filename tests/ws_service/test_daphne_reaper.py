"""Daphne's application checker per process: an idle second looks at no connection, finished applications are reaped.

Real Daphne objects (its ``Server``, ``WebSocketProtocol`` and ``create_application``),
real application coroutines on this test's event loop, no listening socket: the
checker is called by hand, with chosen clock values where a timeout matters. That
dead peers are still closed, and that the product's servers still clean up, is
tested against running servers (tests/integration/test_keepalive.py and the drain
and limit tests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from ws_service import daphne_reaper
from ws_service.daphne_version import supported

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
CLOSE_TIMEOUT = 10


class WatchedDetails(dict[str, Any]):
    """A connection's entry in ``Server.connections`` that counts how often the checker reads it."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        WatchedDetails.reads += 1
        return super().get(key, default)


async def _waits_for_disconnect(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def _ignores_disconnect(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await asyncio.Event().wait()


async def _crashes(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await receive()
    raise ValueError("application bug")


@pytest.fixture(autouse=True)
def _patched() -> Iterator[None]:
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor  # zope interfaces confuse mypy about the reactor's methods
    assert daphne_reaper.install()
    before = set(reactor.getDelayedCalls())
    yield
    for call in set(reactor.getDelayedCalls()) - before:  # the checker re-arms itself on the (not running) reactor
        call.cancel()


def _server(application: Any) -> Any:
    from daphne.server import Server

    # An endpoint it never listens on: the checker is driven by hand.
    server = Server(application=application, endpoints=["tcp:port=0"], application_close_timeout=CLOSE_TIMEOUT)
    server.connections = {}  # what Server.run() starts with
    return server


def _connect(server: Any) -> tuple[Any, asyncio.Queue[dict[str, Any]]]:
    from daphne.ws_protocol import WebSocketProtocol

    protocol = WebSocketProtocol()
    protocol.server = server
    protocol.client_addr, protocol.path = ["127.0.0.1", 40000], b"/ws/"  # what its handshake sets
    server.protocol_connected(protocol)
    server.connections[protocol] = WatchedDetails(server.connections[protocol])
    queue = server.create_application(protocol, {"type": "websocket", "path": "/ws/"})
    assert queue is not None
    return protocol, queue


def _disconnect(server: Any, protocol: Any, queue: asyncio.Queue[dict[str, Any]]) -> None:
    queue.put_nowait({"type": "websocket.disconnect", "code": 1000})
    server.protocol_disconnected(protocol)


async def _settle() -> None:
    for _ in range(5):  # the applications run their steps, finished futures run their done-callbacks
        await asyncio.sleep(0)


async def test_an_idle_second_reads_no_connection_and_a_close_reads_only_that_one() -> None:
    server = _server(_waits_for_disconnect)
    connections = [_connect(server) for _ in range(2000)]
    await _settle()
    WatchedDetails.reads = 0
    for _ in range(5):
        server.application_checker()
    # Daphne's own checker reads every connection twice every second: 20,000 reads in these five seconds.
    assert WatchedDetails.reads == 0
    assert len(server.connections) == 2000

    closing = connections[:3]
    for protocol, queue in closing:
        _disconnect(server, protocol, queue)
    await _settle()
    reaper = daphne_reaper.reaper_of(server)
    checks = reaper.checks
    server.application_checker()
    server.application_checker()
    assert reaper.checks - checks == 3  # the three that closed, once: finished and forgotten
    assert len(server.connections) == 1997
    assert not any(protocol in server.connections for protocol, _ in closing)


async def test_a_crashed_application_is_reaped_its_handshake_refused_and_the_connection_forgotten_on_close() -> None:
    from autobahn.websocket.types import ConnectionDeny
    from twisted.internet.defer import Deferred

    server = _server(_crashes)
    protocol, queue = _connect(server)
    refused: list[Any] = []
    protocol.handshake_deferred = Deferred()
    protocol.handshake_deferred.addErrback(lambda failure: refused.append(failure.value))
    queue.put_nowait({"type": "websocket.connect"})
    await _settle()
    server.application_checker()
    assert "application_instance" not in server.connections[protocol]
    assert len(refused) == 1
    assert isinstance(refused[0], ConnectionDeny)
    assert refused[0].code == 500
    server.protocol_disconnected(protocol)  # the refused handshake closes the socket
    server.application_checker()
    assert protocol not in server.connections


async def test_an_application_ignoring_the_disconnect_is_cancelled_after_the_close_timeout_then_forgotten() -> None:
    server = _server(_ignores_disconnect)
    protocol, queue = _connect(server)
    await _settle()
    _disconnect(server, protocol, queue)
    reaper = daphne_reaper.reaper_of(server)
    disconnected = server.connections[protocol]["disconnected"]
    application = server.connections[protocol]["application_instance"]
    reaper.tick(disconnected + CLOSE_TIMEOUT - 1)
    assert not application.done()
    assert protocol in reaper.attention  # still waited for
    reaper.tick(disconnected + CLOSE_TIMEOUT + 1)
    await _settle()
    assert application.cancelled()
    reaper.tick(time.time() + CLOSE_TIMEOUT + 2)
    assert protocol not in server.connections
    assert not reaper.attention


def test_the_installed_daphne_is_one_the_patches_were_written_against() -> None:
    # Fails when the lock file moves Daphne to a version the patches do not know: re-read
    # Server.application_checker / timeout_checker / create_application against it first.
    assert supported()
    assert supported("4.2.3")
    assert not supported("5.0.0")
