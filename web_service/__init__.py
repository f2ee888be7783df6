"""The HTTP service: admin, login, the WebSocket ticket API and health endpoints."""
