"""Forget Uvicorn's handshake response once the WebSocket is accepted: it is not kept for the connection's life.

Uvicorn's websockets-sansio protocol keeps the response it answers the
handshake with (``protocol.response``: a ``Response`` with its own
``Headers`` map) for as long as the connection stays open, though it reads
it only to send the accept. Patched here (by the launcher, in its own
process only): once the handshake is complete (accepted, or refused), the
response is dropped. Nothing else changes.

The handshake's request stays: websockets' protocol parser keeps it in its
suspended generator for the connection's life, whatever Uvicorn does with
its own reference.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Patch Uvicorn's websockets-sansio protocol (idempotent)."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    if getattr(WebSocketsSansIOProtocol, "_ws_upgrade_patch", False):
        return
    original_send = WebSocketsSansIOProtocol.send

    async def send(self: Any, message: Any) -> None:
        await original_send(self, message)
        if self.handshake_complete:
            self.response = None  # read again only to send the accept, which is done

    setattr(WebSocketsSansIOProtocol, "send", send)  # noqa: B010  # the class is typed; patching is the point
    setattr(WebSocketsSansIOProtocol, "_ws_upgrade_patch", True)  # noqa: B010
