"""Reference: a raw ``websockets`` server on uvloop, no framework, no auth, no JSON on the echo path.

* every connection gets a small ``welcome`` frame first (as every configuration does);
* ``subscribe`` frames join a topic in this process and get ``subscribed`` (echoing the request's ``ref``, so
  the project's own client, ``wsclient``, can use this server too);
* ``publish`` frames are broadcast to this process's subscribers of the topic (local fan-out);
* anything else is echoed back unchanged (request/response);
* ``GET /healthz`` answers 200 (readiness);
* SIGTERM closes every connection with 1012 (service restart) and exits once all are closed or after
  ``WS_DRAIN_TIMEOUT`` seconds (default 10), as the product's drain does.

``python -m bench.servers.raw --port P`` or ``--fd N`` (a listening socket inherited from
``bench.servers.multi``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket

import uvloop
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

WELCOME = json.dumps({"type": "welcome"})
CLOSE_SERVICE_RESTART = 1012
TOPICS: dict[str, set[ServerConnection]] = {}


def health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(200, "ok\n")
    return None


async def handler(ws: ServerConnection) -> None:
    joined: list[str] = []
    try:
        await ws.send(WELCOME)
        async for message in ws:
            if isinstance(message, bytes) or ('"subscribe"' not in message and '"publish"' not in message):
                await ws.send(message)
                continue
            frame = json.loads(message)
            topic = str(frame.get("topic", ""))
            if frame.get("type") == "subscribe":
                TOPICS.setdefault(topic, set()).add(ws)
                joined.append(topic)
                reply = {"type": "subscribed", "topic": topic}
                if "ref" in frame:
                    reply["ref"] = frame["ref"]
                await ws.send(json.dumps(reply))
            elif frame.get("type") == "publish":
                payload = json.dumps({"type": "message", "topic": topic, "text": frame.get("text")})
                broadcast(TOPICS.get(topic, set()), payload)
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass  # closed with a code other than 1000/1001 (1012 on SIGTERM): not a failure of this handler
    finally:
        for topic in joined:
            TOPICS.get(topic, set()).discard(ws)


async def main(port: int | None, fd: int | None) -> None:
    options: dict[str, object] = (
        {"sock": socket.socket(fileno=fd)} if fd is not None else {"host": "127.0.0.1", "port": port}
    )
    server: Server = await serve(
        handler,
        process_request=health,
        compression=None,
        ping_interval=20,
        ping_timeout=30,
        max_queue=None,
        **options,  # type: ignore[arg-type]
    )
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    await stop
    server.close(code=CLOSE_SERVICE_RESTART)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(float(os.environ.get("WS_DRAIN_TIMEOUT", "10"))):
            await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int)
    parser.add_argument("--fd", type=int)
    arguments = parser.parse_args()
    uvloop.run(main(arguments.port, arguments.fd))
