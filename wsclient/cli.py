"""Command line: ``python -m wsclient listen room.lobby``, ``publish``, ``presence``, ``whoami``.

``listen`` prints one JSON line per message on stdout (status lines go to
stderr) and keeps reconnecting, resubscribing from the last id seen, until
interrupted, ``--count`` messages or ``--duration`` seconds. Exit status: 0
done, 1 error, 2 usage, 3 refused for good (4401/4403: log in again), 4 timed
out connecting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from wsclient.backoff import Backoff
from wsclient.client import WsClient
from wsclient.errors import TerminalError, WsClientError
from wsclient.events import Event
from wsclient.web import WebLogin

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED, EXIT_TIMEOUT = 0, 1, 2, 3, 4
DEFAULT_URL = "ws://127.0.0.1:8000/ws/"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m wsclient", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("WSCLIENT_URL", DEFAULT_URL), help="WebSocket endpoint")
    parser.add_argument("--origin", help="Origin header (default: the http(s) origin of --url)")
    auth = parser.add_argument_group("authentication (one of)")
    auth.add_argument(
        "--session-cookie",
        default=os.environ.get("WSCLIENT_SESSION"),
        help="Django session key, or name=value (default: $WSCLIENT_SESSION)",
    )
    auth.add_argument("--ticket-url", help="log in to the web service and use tickets from this /api/ws-ticket URL")
    auth.add_argument("--login-url", help="login form URL (default: /accounts/login/ on the ticket URL's origin)")
    auth.add_argument("--username", default=os.environ.get("WSCLIENT_USERNAME"), help="default: $WSCLIENT_USERNAME")
    auth.add_argument("--password", default=os.environ.get("WSCLIENT_PASSWORD"), help="default: $WSCLIENT_PASSWORD")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to connect and for each request")
    parser.add_argument("--backoff-base", type=float, default=0.5, help="first reconnect delay ceiling (seconds)")
    parser.add_argument("--backoff-cap", type=float, default=30.0, help="largest reconnect delay (seconds)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no status lines on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    listen = commands.add_parser("listen", help="print the messages of topics as JSON lines")
    listen.add_argument("topics", nargs="+", metavar="TOPIC")
    listen.add_argument("--since", type=int, help="replay the stored messages with a greater id first")
    listen.add_argument("--count", type=int, help="exit after this many messages")
    listen.add_argument("--duration", type=float, help="exit after this many seconds")
    listen.add_argument("--all-events", action="store_true", help="print every event, not only messages")

    publish = commands.add_parser("publish", help="publish a message; prints the ack as JSON")
    publish.add_argument("topic", metavar="TOPIC")
    publish.add_argument("text", metavar="TEXT", help='the text, or "-" to publish each line of stdin')

    presence = commands.add_parser(
        "presence", help="print the users subscribed to a topic as JSON (servers with presence)"
    )
    presence.add_argument("topic", metavar="TOPIC")

    commands.add_parser("whoami", help="print the authenticated user as JSON")
    return parser


def make_client(args: argparse.Namespace) -> WsClient:
    """A client configured from the common options.

    It reconnects (with backoff) like any other, so a one-shot command rides
    out a short outage within ``--timeout``.
    """
    backoff = Backoff(base=args.backoff_base, cap=args.backoff_cap)
    common: dict[str, Any] = {
        "origin": args.origin,
        "backoff": backoff,
        "open_timeout": args.timeout,
        "request_timeout": args.timeout,
        "connect_timeout": args.timeout,
    }
    if args.ticket_url:
        if not args.username or args.password is None:
            raise UsageError("--ticket-url needs --username and --password (or WSCLIENT_USERNAME/WSCLIENT_PASSWORD)")
        web = WebLogin(args.ticket_url, args.username, args.password, login_url=args.login_url, timeout=args.timeout)
        return WsClient(args.url, ticket_provider=web.ticket_provider, **common)
    if args.session_cookie:
        return WsClient(args.url, session_cookie=args.session_cookie, **common)
    raise UsageError("authenticate with --session-cookie (or WSCLIENT_SESSION) or --ticket-url")


class UsageError(Exception):
    """Bad or missing options."""


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class _Status:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"wsclient: {text}", file=sys.stderr, flush=True)

    def event(self, event: Event) -> None:
        kind = event["type"]
        if kind == "welcome":
            self(f"connected as {event.get('user', {}).get('username')}")
        elif kind == "subscribed":
            self(f"subscribed {event.get('topic')} last_id={event.get('last_id')}")
        elif kind == "disconnected":
            self(f"disconnected: {event.get('code')} {event.get('reason')}".rstrip())
        elif kind == "reconnecting":
            self(f"reconnecting in {event['delay']:.2f}s (attempt {event['attempt']})")
        elif kind == "error":
            self(f"server error: {event.get('code')}: {event.get('detail')}")


async def listen(args: argparse.Namespace, status: _Status) -> int:
    """Print messages until --count, --duration, a signal or a terminal close."""
    client = make_client(args)
    stream = client.events()
    client.on("*", status.event)
    printed = 0
    deadline = asyncio.timeout(args.duration)
    try:
        async with deadline:
            await client.start()
            for topic in args.topics:
                await client.subscribe(topic, since=args.since)
            async for event in stream:
                if event["type"] == "message" or args.all_events:
                    _print(event)
                    printed += event["type"] == "message"
                    if args.count is not None and printed >= args.count:
                        break
                if event["type"] == "closed" and event.get("terminal"):
                    raise TerminalError(event.get("code") or 0, str(event.get("reason", "")))
    except TimeoutError:
        if not deadline.expired():
            raise  # connecting or subscribing timed out, not --duration
    finally:
        stream.close()
        await client.close()
    return EXIT_OK


async def publish(args: argparse.Namespace, status: _Status) -> int:
    """Publish TEXT (or each stdin line) and print each ack."""
    texts = [line.rstrip("\n") for line in sys.stdin] if args.text == "-" else [args.text]
    client = make_client(args)
    client.on("*", status.event)
    try:
        await client.start()
        for text in texts:
            message_id = await client.publish(args.topic, text)
            _print({"type": "ack", "topic": args.topic, "id": message_id})
    finally:
        await client.close()
    return EXIT_OK


async def presence(args: argparse.Namespace, status: _Status) -> int:
    """Print the users subscribed to TOPIC."""
    client = make_client(args)
    try:
        await client.start()
        _print({"type": "presence", "topic": args.topic, "users": await client.presence(args.topic)})
    finally:
        await client.close()
    return EXIT_OK


async def whoami(args: argparse.Namespace, status: _Status) -> int:
    """Print the authenticated user."""
    client = make_client(args)
    try:
        await client.start()
        _print({"type": "whoami", "user": await client.whoami()})
    finally:
        await client.close()
    return EXIT_OK


COMMANDS = {"listen": listen, "publish": publish, "presence": presence, "whoami": whoami}


async def run(args: argparse.Namespace) -> int:
    """Run the chosen command; SIGINT and SIGTERM end it cleanly."""
    status = _Status(args.quiet)
    task = asyncio.create_task(COMMANDS[args.command](args, status))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        status("interrupted")
        return EXIT_OK
    except UsageError as exc:
        print(f"wsclient: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TerminalError as exc:
        status(f"refused for good (log in again): {exc.code} {exc.reason}")
        return EXIT_REFUSED
    except TimeoutError as exc:
        status(f"timed out {exc}".rstrip())
        return EXIT_TIMEOUT
    except (WsClientError, OSError) as exc:
        status(f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m wsclient``."""
    args = build_parser().parse_args(argv)
    return asyncio.run(run(args))
