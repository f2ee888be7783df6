"""The /ws/ consumer: the kernel's transport with every feature of ``ws_service/features``."""

from __future__ import annotations

from typing import ClassVar

from ws_service.features import load_all
from ws_service.frames import FrameRegistry, Handler, frames
from ws_service.kernel import KernelConsumer

FEATURES = load_all()
# The client frame types and their handlers (the registry's own dict).
HANDLERS: dict[str, Handler] = frames.requests


class ConnectionConsumer(KernelConsumer):
    """One authenticated client connection on /ws/, speaking the protocol of docs/protocol.md."""

    frames: ClassVar[FrameRegistry] = frames
