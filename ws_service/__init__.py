"""The WebSocket-only ASGI service: /ws/ plus /healthz and /readyz."""
