"""Servers the harness runs besides the product: raw websockets, a bare ASGI app, the stock Channels stack."""
