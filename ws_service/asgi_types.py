"""ASGI type aliases used across the ws service."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

type Scope = MutableMapping[str, Any]
type Message = MutableMapping[str, Any]
type Receive = Callable[[], Awaitable[Message]]
type Send = Callable[[Message], Awaitable[None]]
type ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def hands_over[F: Callable[..., Awaitable[None]]](call: F) -> F:
    """Marks an ASGI app's plain ``__call__`` that returns the awaitable of the app it hands the connection to.

    A middleware that only decides at the handshake (pass it on, or refuse it)
    need not stay on the connection's call stack: instead of awaiting its
    inner application it returns the inner application's coroutine, so it
    keeps no suspended coroutine frame (and nothing that frame references)
    for the connection's whole life. Its checks run when it is called, in the
    caller's task, as an ``async def`` body would at its first step. Marked
    as a coroutine function, servers and Channels' routers (which test
    ``inspect.iscoroutinefunction``) still treat it as an ASGI 3 app.
    """
    return inspect.markcoroutinefunction(call)


async def raising(exc: Exception) -> None:
    """An error of a handed-over check, raised inside the application's task as an ``async def`` would.

    Servers call the application outside its task (Daphne in its protocol
    code) and handle its errors in the task: a 500 or close 1011, a log line.
    An app that hands over and is called by the server (the outermost one)
    returns this instead of raising.
    """
    raise exc


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


# The ASGI extension that lets an application answer a handshake with its own HTTP response (Uvicorn).
HTTP_RESPONSE_EXTENSION = "websocket.http.response"
HINT_MAX_LENGTH = 200


def printable_hint(text: str) -> str:
    """``text`` as one line of printable ASCII, short enough for an HTTP reason phrase."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:HINT_MAX_LENGTH]


async def deny_handshake(scope: Scope, receive: Receive, send: Send, hint: str) -> None:
    """Refuse a WebSocket handshake with HTTP 403 that says why.

    With the ``websocket.http.response`` extension (Uvicorn) the hint is the
    response's text body; otherwise it goes as the close's ``reason``, which the
    launcher's Daphne patch (``ws_service.daphne_close``) sends as the body.
    Either way a command-line client sees it, through a proxy too.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    hint = printable_hint(hint)
    if HTTP_RESPONSE_EXTENSION in scope.get("extensions", {}):
        body = f"{hint}\n".encode()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "reason": hint})
