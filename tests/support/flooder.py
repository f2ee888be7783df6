"""A raw WebSocket client that sends frames as fast as the socket takes them and reads everything back."""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from collections import Counter

from tests.support.slow_reader import masked_text_frame, upgraded_socket

OPCODE_TEXT = 0x1
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
# Longest one sendall may block before the blast counts as stuck.
SEND_TIMEOUT_SECONDS = 60.0


OPCODE_PONG = 0xA


def _masked_control(opcode: int, payload: bytes) -> bytes:
    """One client control frame (at most 125 bytes of payload)."""
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


class Flooder:
    """Upgrades, then sends frames at full speed while a thread reads (and counts) every server frame.

    The reader answers the server's pings, counts text frames by their JSON
    ``type``, and answers a close frame, recording its code and when the
    server then ended the TCP connection; ``blast`` reports how long its
    longest ``sendall`` blocked (the server's backpressure).
    """

    def __init__(self, port: int, session_key: str) -> None:
        self.sock = upgraded_socket(port, session_key)
        self.sock.settimeout(SEND_TIMEOUT_SECONDS)
        self.types: Counter[str] = Counter()
        self.close_code: int | None = None
        self.read_error: Exception | None = None  # why the reader stopped, if not a close frame
        # When the server's close frame arrived, and when the server then ended the TCP connection.
        self.close_received_at: float | None = None
        self.server_gone_at: float | None = None
        self.ended = threading.Event()
        self.closing = threading.Event()  # the server's close frame arrived
        self._changed = threading.Condition()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _recv_exactly(self, count: int, buffer: bytearray) -> bytes:
        while len(buffer) < count:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed by the server")
            buffer += chunk
        data = bytes(buffer[:count])
        del buffer[:count]
        return data

    def _read(self) -> None:
        buffer = bytearray()
        try:
            while True:
                first, second = self._recv_exactly(2, buffer)
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", self._recv_exactly(2, buffer))
                elif length == 127:
                    (length,) = struct.unpack("!Q", self._recv_exactly(8, buffer))
                payload = self._recv_exactly(length, buffer)
                opcode = first & 0x0F
                if opcode == OPCODE_TEXT:
                    kind = str(json.loads(payload).get("type"))
                    with self._changed:
                        self.types[kind] += 1
                        self._changed.notify_all()
                elif opcode == OPCODE_PING:
                    self._send(_masked_control(OPCODE_PONG, payload))
                elif opcode == OPCODE_CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.close_received_at = time.monotonic()
                    self.closing.set()
                    self._send(_masked_control(OPCODE_CLOSE, payload[:2]))  # the closing handshake's reply
                    try:
                        while self.sock.recv(1 << 16):  # the server ends the TCP connection once it reads the reply
                            pass
                    except ConnectionResetError:
                        pass  # it closed with frames of ours unread: the kernel resets instead of a FIN
                    self.server_gone_at = time.monotonic()
                    return
        except (OSError, ConnectionError, ValueError) as error:
            self.read_error = error
        finally:
            self.ended.set()
            with self._changed:
                self._changed.notify_all()

    def _send(self, data: bytes) -> float:
        """Send all of ``data``; the seconds it took (it blocks while the server does not read)."""
        with self._send_lock:
            started = time.monotonic()
            self.sock.sendall(data)
            return time.monotonic() - started

    def send_json(self, frame: dict[str, object]) -> None:
        self._send(masked_text_frame(json.dumps(frame).encode()))

    def blast(self, frame: bytes, count: int, deadline: float) -> tuple[int, float]:
        """Send ``frame`` ``count`` times (until ``deadline``, monotonic, or the server closes).

        Returns the frames sent and the longest one ``sendall`` blocked, in seconds.
        """
        longest = 0.0
        for sent in range(count):
            if time.monotonic() > deadline or self.ended.is_set() or self.closing.is_set():
                return sent, longest
            try:
                longest = max(longest, self._send(frame))
            except OSError:
                if self.closing.is_set() or self.ended.is_set():
                    return sent, longest  # the server closed the connection: the flood ends
                raise
        return count, longest

    def wait_for(self, kind: str, count: int, timeout: float) -> bool:
        """Wait until ``count`` frames of ``kind`` have arrived; ``False`` on timeout or a closed socket."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.types[kind] < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended.is_set():
                    return self.types[kind] >= count
                self._changed.wait(remaining)
        return True

    def close(self) -> None:
        self.sock.close()
        self._reader.join(5)
