"""Fan-out on Uvicorn: one WebSocket frame built per event per process, written to each socket as it is.

A server frame is never masked, so the bytes of a text frame are the same for
every connection (per-message compression is off, ``ws_per_message_deflate``).
Uvicorn's ASGI ``send`` builds them again for each connection (UTF-8 encode,
frame header, a buffer join): for a topic message with thousands of local
subscribers that is most of the fan-out's cost. The node's events therefore
carry the frame built once (:func:`shared_frame`), and :func:`write_frame`
hands it to the connection's transport directly, as ``websockets.broadcast``
does.

Only a plainly open Uvicorn websockets-sansio connection is written to this
way; in every other state (handshake, closing, close sent, aborted by the
output budget, paused, a server other than Uvicorn) :func:`write_frame`
returns ``False`` and the caller sends through ASGI as usual, which raises
what it raises there. Writing to the transport passes through the output
budget (``ws_service.output_budget``) exactly as Uvicorn's own write does.
"""

from __future__ import annotations

from typing import Any, Final

from websockets.frames import Frame, Opcode
from websockets.protocol import State

from ws_service.output_budget import ABORTED_FLAG

# Where an event keeps its frame once built (next to the node's JSON text, ``ENCODED_KEY``).
FRAME_KEY: Final = "wire_frame"

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - Uvicorn is a dependency; without it nothing is written directly
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


def text_frame(text: str) -> bytes:
    """The bytes of an unmasked, final text frame holding ``text``."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


def shared_frame(event: dict[str, Any], text: str) -> bytes:
    """``text``'s frame, built on the first call for ``event`` and kept in it for every other connection."""
    frame: bytes | None = event.get(FRAME_KEY)
    if frame is None:
        frame = event[FRAME_KEY] = text_frame(text)
    return frame


def direct_protocol(send: Any) -> Any | None:
    """The Uvicorn websockets-sansio protocol whose ASGI ``send`` this is, else ``None``."""
    protocol = getattr(send, "__self__", None)
    if WebSocketsSansIOProtocol is None or not isinstance(protocol, WebSocketsSansIOProtocol):
        return None
    return protocol


def write_frame(protocol: Any, frame: bytes) -> bool:
    """Write ``frame`` to an open connection; ``False`` (nothing written) in any other state."""
    connection = protocol.conn
    if (
        protocol.disconnected
        or protocol.close_sent
        or not protocol.handshake_complete
        or protocol.initial_response is not None
        or not protocol.writable.is_set()
        or getattr(protocol, ABORTED_FLAG, False)
        or connection.state is not State.OPEN
        or connection.expect_continuation_frame
        or connection.extensions
        or connection.debug
    ):
        return False
    protocol.transport.write(frame)
    return True
