"""A raw WebSocket client that completes the handshake and then never reads (a slow consumer)."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from typing import Any

from tests.support.servers import HOST

# The smallest receive buffer Linux allows (it doubles what is asked): the peer's window stays tiny.
RECEIVE_BUFFER_BYTES = 4096


def masked_text_frame(payload: bytes) -> bytes:
    """One client-to-server text frame (clients must mask)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + mask + masked


def upgraded_socket(
    port: int, session_key: str, *, origin: str | None = None, receive_buffer: int = 0
) -> socket.socket:
    """A TCP socket to the ws server on 127.0.0.1, past a WebSocket handshake as ``session_key``'s user.

    ``origin`` defaults to the server's own (``http://127.0.0.1:<port>``), which it trusts;
    ``receive_buffer`` (bytes, 0: the kernel's default) is set before connecting.
    """
    origin = origin or f"http://{HOST}:{port}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect
    sock.settimeout(10)
    sock.connect((HOST, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /ws/ HTTP/1.1\r\n"
        f"Host: {HOST}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {origin}\r\nCookie: sessionid={session_key}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 8192:
        chunk = sock.recv(1)  # byte by byte: what follows the head is the first frame
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status:
        sock.close()
        raise AssertionError(f"handshake refused: {head[:300]!r}")
    return sock


class SlowReader:
    """Connects with a tiny receive buffer, upgrades, sends frames, and never reads what comes back."""

    def __init__(self, port: int, session_key: str, *, origin: str | None = None) -> None:
        """``origin`` defaults to the server's own (``http://127.0.0.1:<port>``), which it trusts."""
        self.sock = upgraded_socket(port, session_key, origin=origin, receive_buffer=RECEIVE_BUFFER_BYTES)

    def send_json(self, frame: dict[str, Any]) -> None:
        self.sock.sendall(masked_text_frame(json.dumps(frame).encode()))

    def closed_by_server(self, timeout: float) -> bool:
        """Read (drain) until the server's end is gone; ``False`` if it is still open after ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                self.sock.settimeout(remaining)
                if not self.sock.recv(1 << 16):
                    return True
        except TimeoutError:
            return False
        except OSError:  # reset by the abort
            return True
        return False

    def close(self) -> None:
        self.sock.close()
