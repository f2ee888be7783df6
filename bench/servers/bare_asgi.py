"""A bare ASGI app (no Django, no Channels): the server's own ceiling under Daphne or Uvicorn.

Same behaviour as ``bench.servers.raw``: a ``welcome`` on connect, ``subscribe`` /
``publish`` with fan-out to this process's subscribers, everything else echoed,
``/healthz`` over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

WELCOME = json.dumps({"type": "welcome"})
TOPICS: dict[str, set[Send]] = {}


async def _http(receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\n"})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif event["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _handle_text(text: str, send: Send, joined: list[str]) -> None:
    if '"subscribe"' not in text and '"publish"' not in text:
        await send({"type": "websocket.send", "text": text})
        return
    frame = json.loads(text)
    topic = str(frame.get("topic", ""))
    if frame.get("type") == "subscribe":
        TOPICS.setdefault(topic, set()).add(send)
        joined.append(topic)
        await send({"type": "websocket.send", "text": json.dumps({"type": "subscribed", "topic": topic})})
    elif frame.get("type") == "publish":
        event = {
            "type": "websocket.send",
            "text": json.dumps({"type": "message", "topic": topic, "text": frame["text"]}),
        }
        for subscriber in list(TOPICS.get(topic, ())):
            await subscriber(event)
    else:
        await send({"type": "websocket.send", "text": text})


async def _websocket(receive: Receive, send: Send) -> None:
    joined: list[str] = []
    try:
        while True:
            event = await receive()
            if event["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
                await send({"type": "websocket.send", "text": WELCOME})
            elif event["type"] == "websocket.receive":
                text = event.get("text")
                if text is not None:
                    await _handle_text(text, send, joined)
                else:
                    await send({"type": "websocket.send", "bytes": event.get("bytes") or b""})
            else:  # websocket.disconnect
                return
    finally:
        for topic in joined:
            TOPICS.get(topic, set()).discard(send)


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await _websocket(receive, send)
    elif scope["type"] == "http":
        await _http(receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)
