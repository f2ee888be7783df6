"""Daphne's timeout sweep on a timing wheel: every 2 s only the connections that are due are checked.

Daphne's ``Server.timeout_checker`` runs every 2 s and calls ``check_timeouts()``
on *every* connection: for an open WebSocket, a max-age check and "is a
keepalive ping due" (``WS_PING_INTERVAL``). With N idle connections that is N
calls every 2 s, whether anything is due or not; in an idle Daphne process it
was about a third of the CPU, more than the pings themselves.

Patched here (by the launcher, in its own process only): the sweep still runs
every :data:`SWEEP_SECONDS`, but connections wait in buckets by the sweep
at which they are next due (a timing wheel), so a sweep calls
``check_timeouts()`` only on those:

* an open WebSocket is due at the earlier of its next ping
  (``last_ping + ping_interval``; Daphne moves ``last_ping`` on every received
  message too) and its maximum age (``WS_MAX_CONNECTION_AGE``);
* anything else (a handshake in progress, an HTTP request, a closing socket)
  is checked at every sweep, as before.

Behaviour is Daphne's: a ping goes out at the first sweep after it is due,
the handshake timeout and the maximum age hold to the same 2 s grid, and a
peer that does not answer a ping is dropped by autobahn ``WS_PING_TIMEOUT``
seconds later. So a dead peer is still closed within ``WS_PING_INTERVAL`` +
``WS_PING_TIMEOUT`` + 2 s of its last sign of life.
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Any, Final

from ws_service.daphne_version import kept_on, supported

SWEEP_SECONDS: Final = 2.0
WHEEL_ATTRIBUTE: Final = "_ws_timeout_wheel"


def _slot(at: float) -> int:
    return math.floor(at / SWEEP_SECONDS)


class TimeoutWheel:
    """One per Daphne server: its connections by the sweep at which they are next checked."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.buckets: dict[int, list[Any]] = {}
        self.slots: list[int] = []  # a heap of the buckets' keys
        #: ``check_timeouts()`` calls made, for tests and curiosity.
        self.checks = 0

    def schedule(self, protocol: Any, slot: int) -> None:
        bucket = self.buckets.get(slot)
        if bucket is None:
            bucket = self.buckets[slot] = []
            heapq.heappush(self.slots, slot)
        bucket.append(protocol)

    def due_at(self, protocol: Any, now: float) -> float:
        """When ``protocol`` next needs ``check_timeouts()`` (``now``: at the next sweep)."""
        from daphne.ws_protocol import WebSocketProtocol

        if not isinstance(protocol, WebSocketProtocol) or protocol.state != protocol.STATE_OPEN:
            return now
        server = self.server
        due: float = protocol.last_ping + server.ping_interval
        if server.websocket_timeout >= 0:
            due = min(due, protocol.socket_opened + server.websocket_timeout)
        return due

    def sweep(self, now: float) -> None:
        """Check every connection due by ``now``; each goes back into the bucket of its next due time."""
        current = _slot(now)
        connections = self.server.connections
        while self.slots and self.slots[0] <= current:
            for protocol in self.buckets.pop(heapq.heappop(self.slots)):
                if protocol not in connections:
                    continue  # reaped by Daphne's application checker: forget it
                protocol.check_timeouts()
                self.checks += 1
                # Due within this slot but not yet (or now, or "every sweep"): the next sweep checks it.
                self.schedule(protocol, max(_slot(self.due_at(protocol, now)), current + 1))


def wheel_of(server: Any) -> TimeoutWheel:
    return kept_on(server, WHEEL_ATTRIBUTE, TimeoutWheel)


def install() -> None:
    """Patch ``daphne.server.Server`` (idempotent): new connections join the wheel, the sweep uses it."""
    from daphne.server import Server
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor  # zope interfaces confuse mypy about callLater's arguments
    if getattr(Server, "_ws_timeout_wheel_patch", False) or not supported():
        return  # patched already, or a Daphne it was not written against (``ws_service.daphne_version``)
    original_connected = Server.protocol_connected

    def protocol_connected(self: Any, protocol: Any) -> None:
        original_connected(self, protocol)
        wheel_of(self).schedule(protocol, _slot(time.time()) + 1)

    def timeout_checker(self: Any) -> None:
        wheel_of(self).sweep(time.time())
        reactor.callLater(SWEEP_SECONDS, self.timeout_checker)

    Server.protocol_connected = protocol_connected
    Server.timeout_checker = timeout_checker
    Server._ws_timeout_wheel_patch = True
