"""Let Daphne send the RFC 6455 close codes this service documents, with their reasons.

Daphne 4.2 passes an application's ``websocket.close`` to autobahn's
``sendClose``, which accepts only 1000 and 3000-4999 and raises for anything
else (the client then sees 1011), and it drops the ``reason``. The ws
service's launcher installs this patch, so ``1008`` (policy violation),
``1009`` (too big), ``1011`` and ``1012`` (service restart) reach clients with
a reason. Only the launcher's own process is patched.
"""

from __future__ import annotations

from typing import Any

from autobahn.util import encode_truncate

# The RFC 6455 codes an endpoint may send, besides 1000 and the 3000-4999 range.
RFC_SENDABLE = frozenset({1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
MAX_REASON_BYTES = 123


def sendable(code: int) -> bool:
    return code == 1000 or 3000 <= code <= 4999 or code in RFC_SENDABLE


def install() -> None:
    """Patch ``daphne.ws_protocol.WebSocketProtocol`` (idempotent)."""
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_ws_service_close_patch", False):
        return
    original = WebSocketProtocol.handle_reply

    def handle_reply(self: Any, message: dict[str, Any]) -> None:
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
