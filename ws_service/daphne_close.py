"""Let Daphne send the RFC 6455 close codes this service documents, with their reasons.

Daphne 4.2 passes an application's ``websocket.close`` to autobahn's
``sendClose``, which accepts only 1000 and 3000-4999 and raises for anything
else (the client then sees 1011), and it drops the ``reason``. The ws
service's launcher installs this patch, so ``1008`` (policy violation),
``1009`` (too big), ``1011`` and ``1012`` (service restart) reach clients with
a reason. A handshake the application refuses gets HTTP 403 with the
``reason`` of its close as a text body (Daphne sends none), so a client learns
why. Only the launcher's own process is patched.
"""

from __future__ import annotations

from typing import Any

from autobahn.util import encode_truncate

# The RFC 6455 codes an endpoint may send, besides 1000 and the 3000-4999 range.
RFC_SENDABLE = frozenset({1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
MAX_REASON_BYTES = 123
# Daphne's own reason phrase for a refused handshake.
DEFAULT_REJECT_REASON = "Access denied"


def sendable(code: int) -> bool:
    return code == 1000 or 3000 <= code <= 4999 or code in RFC_SENDABLE


def reject(protocol: Any, reason: str) -> None:
    """Daphne's ``serverReject``, answering 403 with ``reason`` as a text body.

    Daphne (through autobahn) would send a bare ``403 Access denied``; proxies
    replace the reason phrase, so the hint goes in the body. The response is
    written here and the connection closed; the handshake's deferred is never
    fired, so autobahn sends nothing more.
    """
    body = f"{reason}\n".encode()
    head = (
        "HTTP/1.1 403 Forbidden\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    protocol.sendData(head.encode("ascii") + body)
    protocol.dropConnection(abort=False)
    del protocol.handshake_deferred
    protocol.server.protocol_disconnected(protocol)
    client = "{}:{}".format(*protocol.client_addr) if protocol.client_addr else None
    protocol.server.log_action("websocket", "rejected", {"path": protocol.request.path, "client": client})


def install() -> None:
    """Patch ``daphne.ws_protocol.WebSocketProtocol`` (idempotent)."""
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_ws_service_close_patch", False):
        return
    original = WebSocketProtocol.handle_reply

    def handle_reply(self: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.close" and self.state == self.STATE_CONNECTING:
            reject(self, message.get("reason") or DEFAULT_REJECT_REASON)
            return
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            code = message.get("code") or 1000
            if not sendable(code):
                code = 1011
            reason = message.get("reason") or None
            reason_utf8 = encode_truncate(reason, MAX_REASON_BYTES) if reason else None
            self.sendCloseFrame(code=code, reasonUtf8=reason_utf8, isReply=False)
            return
        original(self, message)

    WebSocketProtocol.handle_reply = handle_reply
    WebSocketProtocol._ws_service_close_patch = True
