"""Sends on Uvicorn straight to the socket: one frame built per fan-out event per process, and every reply.

A server frame is never masked, so the bytes of a text frame are the same for
every connection (per-message compression is off, ``ws_per_message_deflate``).
Uvicorn's ASGI ``send`` builds them again for each connection (UTF-8 encode,
frame header, a buffer join): for a topic message with thousands of local
subscribers that is most of the fan-out's cost. The node's events therefore
carry the frame built once (:func:`shared_frame`), and :func:`write_frame`
hands it to the connection's transport directly, as ``websockets.broadcast``
does. Every other frame (a reply, an error) is written the same way, built
by :func:`text_frame`: Uvicorn's ``send`` (its state checks, a coroutine, the
frame object, a buffer join) and the output budget's wrapper around it were
a fifth of a request's CPU.

Only a plainly open Uvicorn websockets-sansio connection is written to this
way; in every other state (handshake, closing, close sent, aborted by the
output budget, paused, a server other than Uvicorn) :func:`write_frame`
returns ``False`` and the caller sends through ASGI as usual, which raises
what it raises there. Writing to the transport passes through the output
budget (``ws_service.output_budget``) exactly as Uvicorn's own write does.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from websockets.frames import Opcode
from websockets.protocol import State

from ws_service.output_budget import ABORTED_FLAG

# Where an event keeps its frame once built (next to the node's JSON text, ``ENCODED_KEY``).
FRAME_KEY: Final = "wire_frame"
# The first byte of a final text frame (FIN bit, opcode 1); the length markers of the second byte.
FIN_TEXT: Final = 0x80 | Opcode.TEXT.value
PAYLOAD_LENGTH_16: Final = 126
PAYLOAD_LENGTH_64: Final = 127
_HEADER_16: Final = struct.Struct("!BBH")
_HEADER_64: Final = struct.Struct("!BBQ")

try:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
except ImportError:  # pragma: no cover - Uvicorn is a dependency; without it nothing is written directly
    WebSocketsSansIOProtocol = None  # type: ignore[assignment,misc]


def text_frame(text: str) -> bytes:
    """The bytes of an unmasked, final text frame holding ``text`` (RFC 6455, section 5.2).

    What ``websockets.frames.Frame(Opcode.TEXT, data).serialize(mask=False,
    extensions=[])`` returns (the tests compare both at every length class),
    in a sixth of its time: a reply is one small frame, and building it was a
    microsecond of each request's CPU.
    """
    data = text.encode()
    size = len(data)
    if size < PAYLOAD_LENGTH_16:
        return bytes((FIN_TEXT, size)) + data
    if size < 1 << 16:
        return _HEADER_16.pack(FIN_TEXT, PAYLOAD_LENGTH_16, size) + data
    return _HEADER_64.pack(FIN_TEXT, PAYLOAD_LENGTH_64, size) + data


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
