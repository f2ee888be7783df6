"""Forget Daphne's HTTP request once it has become a WebSocket: it is not kept for the connection's life.

Daphne answers a WebSocket handshake by handing the socket from its HTTP
channel (Twisted's ``HTTPChannel``) to a new WebSocket protocol, but the
channel keeps its request (``WebRequest``) in ``channel.requests`` for good:
the request never finishes, and the socket still lists the channel as its
producer. So every open WebSocket kept the HTTP request alive: its two header
maps (a list per header), its body buffer and more, about 3 KiB and 30
objects the garbage collector walks on every full collection.

Patched here (by the launcher, in its own process only): once Daphne has
upgraded a request, it is taken out of its channel's ``requests``. The
channel stays the socket's producer (it relays flow control and never reads
``requests`` again: the socket's protocol, and so ``connectionLost``, is now
the WebSocket's). :func:`install` patches only Daphne versions it was written
against (``ws_service.daphne_version``).
"""

from __future__ import annotations

from typing import Any

from ws_service.daphne_version import supported


def forget_upgraded(request: Any) -> bool:
    """Drop ``request`` from its channel if Daphne upgraded it to a WebSocket; whether it did."""
    channel = request.channel
    # Daphne moves the transport away from the request (``self.transport = None``) when it upgrades.
    if request.transport is not None or channel is None or request not in channel.requests:
        return False
    channel.requests.remove(request)
    return True


def install() -> None:
    """Patch ``daphne.http_protocol.WebRequest`` (idempotent; nothing on a Daphne it does not know)."""
    from daphne.http_protocol import WebRequest

    if getattr(WebRequest, "_ws_upgrade_patch", False) or not supported():
        return
    original = WebRequest.process

    def process(self: Any) -> None:
        original(self)
        forget_upgraded(self)

    WebRequest.process = process
    WebRequest._ws_upgrade_patch = True
