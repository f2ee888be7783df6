"""An asyncio client for the /ws/ protocol (docs/protocol.md).

It keeps one WebSocket open and, when it drops, reconnects with capped
exponential backoff and full jitter (kept small while a server that closed
with 1012 restarts: see :mod:`wsclient.backoff`); after each ``welcome`` it subscribes
again to every topic with ``since`` = the newest id it has seen, so the
server replays exactly what was missed, and it drops any message it has
already seen (same topic, id not above the last one). When a replay stops
at the server's limit (``more_history``), it asks for the rest with ``since``
until it has caught up. Close codes 4401 and 4403 end it for good.

Every request carries a ``ref`` unique to this client; its reply and any
``error`` answering it echo that ``ref``, and only that matches them (an
``error`` without a ``ref`` answers no request of this client: it is emitted
as an event only).

    async with WsClient("ws://127.0.0.1:8001/ws/", session_cookie=key) as client:
        stream = client.events()
        await client.subscribe("room.lobby")
        await client.publish("room.lobby", "hello")
        async for event in stream:
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Origin

from wsclient.backoff import Backoff
from wsclient.errors import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    TERMINAL_CLOSE_CODES,
    ClientClosedError,
    ConnectionLostError,
    NotLoggedInError,
    ServerError,
    TerminalError,
)
from wsclient.events import Callback, Event, EventHub, EventStream
from wsclient.tracking import MessageTracker

logger = logging.getLogger("wsclient")

#: Returns a fresh one-time ticket; called before every connection attempt.
TicketProvider = Callable[[], Awaitable[str]]

#: Requests one presence() call may make to page through a large topic.
MAX_PRESENCE_PAGES = 1000

#: Close code of a server that is restarting (its drain on SIGTERM, docs/protocol.md).
CLOSE_SERVICE_RESTART = 1012
#: Handshake statuses by which a proxy says that no ws process answers it (502, 503, 504): behind
#: the compose proxy a restarting ws service looks like this instead of a refused connection.
PROXY_UPSTREAM_AWAY = frozenset({502, 503, 504})


def refused(error: BaseException) -> bool:
    """Whether a connection attempt failed because nothing listens there (every address refused)."""
    if isinstance(error, ConnectionRefusedError):
        return True
    # asyncio joins the errors of several addresses (``localhost``: ::1 and 127.0.0.1) into one OSError.
    if type(error) is not OSError or not str(error).startswith("Multiple exceptions: "):
        return False
    parts = str(error).removeprefix("Multiple exceptions: ").split(", [Errno ")
    return all(f"{errno.ECONNREFUSED}] Connect call failed" in part for part in parts)


#: Replies of optional server features: a server without the feature sends none of
#: them, and the client's call for it then fails with the server's ``unknown_type``.
OPTIONAL_REPLY_TYPES = frozenset({"presence"})
#: Frames that answer a request of the client (the others are pushed).
REPLY_TYPES = frozenset({"subscribed", "unsubscribed", "ack", "whoami", "pong", "error"}) | OPTIONAL_REPLY_TYPES


def origin_for(url: str) -> str:
    """The ``Origin`` a browser page on the same host would send: ``ws`` → ``http``."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to (or replaced in) its query string."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(slots=True)
class _Pending:
    """A request waiting for its reply frame (the one of ``reply_type``, or an ``error``, echoing ``ref``)."""

    reply_type: str
    topic: str | None
    ref: str
    future: asyncio.Future[Event]
    #: For the client's own resubscriptions: handles the reply instead of a waiter.
    on_reply: Callable[[Event], None] | None = None
    #: A ``subscribe`` with ``since``: the server replays what follows it.
    replayed: bool = False

    def matches(self, frame: Event) -> bool:
        """Whether ``frame`` answers this request: its ``ref``, and the reply type or ``error``."""
        return frame.get("ref") == self.ref and frame["type"] in (self.reply_type, "error")


@dataclass(slots=True)
class Stats:
    """Counters for operations and benchmarks."""

    #: Connections that reached ``welcome``.
    connects: int = 0
    #: Connections that ended, and attempts that failed, other than by :meth:`WsClient.close`.
    disconnects: int = 0
    #: ``message`` events emitted (duplicates excluded).
    messages: int = 0


class WsClient:
    """A reconnecting client of the /ws/ endpoint.

    Authenticate with ``session_cookie`` (the Django session key, or a whole
    ``name=value`` cookie) or with ``ticket_provider``, an async callable
    returning a fresh one-time ticket for each connection attempt (raise
    :class:`~wsclient.errors.NotLoggedInError` from it to stop for good).
    ``origin`` defaults to the http(s) origin of ``url``; pass ``""`` to send
    none.

    Requests (:meth:`subscribe`, :meth:`publish`, …) wait up to
    ``request_timeout`` for a connection and then for their reply. Events are
    read with :meth:`events` or :meth:`on` (see :mod:`wsclient.events`).
    """

    def __init__(
        self,
        url: str,
        *,
        session_cookie: str | None = None,
        ticket_provider: TicketProvider | None = None,
        origin: str | None = None,
        headers: Mapping[str, str] | None = None,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
        request_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        connect_timeout: float | None = 30.0,
    ) -> None:
        """Configure the client; nothing happens until :meth:`start`."""
        if session_cookie is not None and ticket_provider is not None:
            raise ValueError("pass session_cookie or ticket_provider, not both")
        self.url = url
        self.origin = origin_for(url) if origin is None else origin
        self.reconnect = reconnect
        self.backoff = backoff if backoff is not None else Backoff()
        self.open_timeout = open_timeout
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self.stats = Stats()
        #: ``welcome["user"]`` and ``welcome["connection_id"]`` of the current connection.
        self.user: dict[str, Any] | None = None
        self.connection_id: str | None = None
        self._ticket_provider = ticket_provider
        self._headers = dict(headers or {})
        if session_cookie is not None:
            cookie = session_cookie if "=" in session_cookie else f"sessionid={session_cookie}"
            self._headers["Cookie"] = cookie
        self._hub = EventHub()
        self._subscriptions: dict[str, None] = {}  # an ordered set
        self._tracker = MessageTracker()
        self._pending: dict[str, _Pending] = {}  # by ref
        self._refs = (f"{secrets.token_hex(4)}-{n}" for n in itertools.count(1))
        self._ws: ClientConnection | None = None
        self._ready = False
        self._stopped = False
        self._closing = False
        self._terminal: TerminalError | None = None
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.Future[None] | None = None
        self._sends: set[asyncio.Future[None]] = set()  # continuation subscribes in flight
        self._last_close = "never connected"

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> WsClient:
        """Start and wait for the first ``welcome`` (see :meth:`start`)."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the connection and stop reconnecting."""
        await self.close()

    async def start(self) -> None:
        """Start connecting; return once welcomed.

        Raises :class:`~wsclient.errors.TerminalError` if the server refuses
        the client for good, ``TimeoutError`` if no connection succeeds within
        ``connect_timeout`` seconds (retrying with backoff until then). The
        client is closed when ``start`` fails.
        """
        if self._task is not None:
            raise RuntimeError("the client was already started")
        self._task = asyncio.create_task(self._run(), name=f"wsclient {self.url}")
        try:
            async with asyncio.timeout(self.connect_timeout):
                await self._wait_ready()
        except TimeoutError as exc:
            await self.close()
            raise TimeoutError(f"no connection within {self.connect_timeout}s ({self._last_close})") from exc
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection, stop reconnecting and end the event streams."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            self._stopped = True
            await self._hub.close()
            return
        ws = self._ws
        if ws is not None:  # the reader sees the close and the loop ends
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
        if not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 5)
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def wait_closed(self) -> None:
        """Wait until the client has stopped; raise its terminal error, if any.

        Bound it with ``asyncio.timeout``: a client that can reconnect never stops by itself.
        """
        while not self._stopped:
            await self._next_change()
        if self._terminal is not None:
            raise self._terminal

    @property
    def connected(self) -> bool:
        """Whether a welcomed connection is open right now."""
        return self._ready

    @property
    def terminal_error(self) -> TerminalError | None:
        """Why the server refused the client for good, once it has."""
        return self._terminal

    # -- events ------------------------------------------------------------

    def events(self) -> EventStream:
        """A stream of every event from now on (create it before acting)."""
        return self._hub.stream()

    def on(self, event_type: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` for each event of ``event_type`` (``"*"`` for all); returns a remover."""
        return self._hub.on(event_type, callback)

    # -- topics ------------------------------------------------------------

    @property
    def subscriptions(self) -> list[str]:
        """The topics resubscribed after each reconnect."""
        return list(self._subscriptions)

    def last_id(self, topic: str) -> int | None:
        """The newest message id seen on ``topic`` (or announced by ``subscribed``)."""
        return self._tracker.last(topic)

    @property
    def duplicates_dropped(self) -> int:
        """How many ``message`` frames were dropped as already seen."""
        return self._tracker.duplicates

    async def subscribe(self, topic: str, since: int | None = None) -> int:
        """Subscribe to ``topic``; returns the server's ``last_id``.

        With ``since``, the server then replays the stored messages with a
        greater id (they arrive as ``message`` events). Without it, only new
        messages arrive. Either way the topic is resubscribed after every
        reconnect, from the newest id seen.
        """
        frame: Event = {"type": "subscribe", "topic": topic}
        if since is not None:
            frame["since"] = since
        reply = await self._request(frame, "subscribed", topic=topic, since=since)
        self._subscriptions[topic] = None
        last_id = int(reply.get("last_id", 0))
        return last_id

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic`` (and stop resubscribing to it)."""
        self._subscriptions.pop(topic, None)
        await self._request({"type": "unsubscribe", "topic": topic}, "unsubscribed", topic=topic)

    async def publish(self, topic: str, text: str) -> int:
        """Publish ``text`` to ``topic``; returns the stored message's id (from the ``ack``)."""
        reply = await self._request({"type": "publish", "topic": topic, "text": text}, "ack", topic=topic)
        return int(reply["id"])

    async def typing(self, topic: str) -> str:
        """Tell the other subscribers of ``topic`` that this user is typing; returns the request's ``ref``.

        The server sends no reply (and drops indicators within its throttle
        interval). If it refuses the request (say, ``not_subscribed``), an
        ``error`` event echoing the returned ``ref`` follows.
        """
        async with asyncio.timeout(self.request_timeout):
            ws = await self._wait_ready()
            ref = next(self._refs)
            try:
                await ws.send(json.dumps({"type": "typing", "topic": topic, "ref": ref}))
            except ConnectionClosed as exc:
                raise ConnectionLostError("connection closed before typing was sent") from exc
        return ref

    async def presence(self, topic: str, *, max_pages: int = MAX_PRESENCE_PAGES) -> list[dict[str, Any]]:
        """The users currently subscribed to ``topic`` on any replica.

        The server pages a long list (each reply fits one frame); this follows
        the ``next`` cursors, at most ``max_pages`` requests.
        """
        users: list[dict[str, Any]] = []
        frame: Event = {"type": "presence", "topic": topic}
        for _ in range(max_pages):
            reply = await self._request(frame, "presence", topic=topic)
            users.extend(reply.get("users", []))
            cursor = reply.get("next")
            if not isinstance(cursor, str):
                break
            frame = {"type": "presence", "topic": topic, "after": cursor}
        return users

    async def whoami(self) -> dict[str, Any]:
        """The authenticated user as the server sees it."""
        reply = await self._request({"type": "whoami"}, "whoami")
        user: dict[str, Any] = reply["user"]
        return user

    async def ping(self) -> None:
        """A protocol-level ping; returns when the ``pong`` arrives."""
        await self._request({"type": "ping"}, "pong")

    # -- requests ------------------------------------------------------------

    async def _request(
        self,
        frame: Event,
        reply_type: str,
        *,
        topic: str | None = None,
        since: int | None = None,
    ) -> Event:
        """Send ``frame`` with a fresh ``ref`` once connected and wait for the reply echoing it; raise on ``error``.

        For a ``subscribe`` with ``since``, the topic's last id is set to
        ``since`` before the frame goes out, so the replay is not mistaken
        for duplicates.
        """
        async with asyncio.timeout(self.request_timeout):
            ws = await self._wait_ready()
            future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
            ref = next(self._refs)
            self._pending[ref] = _Pending(reply_type, topic, ref, future, replayed=since is not None)
            try:
                if topic is not None and since is not None:
                    self._tracker.replay_from(topic, since)
                try:
                    await ws.send(json.dumps({**frame, "ref": ref}))
                except ConnectionClosed as exc:
                    raise ConnectionLostError(f"connection closed before {frame['type']} was sent") from exc
                reply = await future
            finally:
                self._pending.pop(ref, None)
        if reply["type"] == "error":
            raise ServerError(reply)
        return reply

    def _resolve(self, frame: Event) -> None:
        """Settle the request whose ``ref`` the reply (or error) echoes, if any is waiting."""
        ref = frame.get("ref")
        pending = self._pending.get(ref) if isinstance(ref, str) else None
        if pending is None or not pending.matches(frame):
            return
        del self._pending[pending.ref]
        if frame["type"] == "subscribed":
            self._subscribed(frame, replayed=pending.replayed)
        if pending.on_reply is not None:
            pending.on_reply(frame)
        elif not pending.future.done():
            pending.future.set_result(frame)

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for request in pending.values():
            if not request.future.done():
                request.future.set_exception(error)
                request.future.exception()  # retrieved: no "never retrieved" warning if nobody waits

    # -- state changes -------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _next_change(self) -> None:
        await self._changed.wait()

    async def _wait_ready(self) -> ClientConnection:
        """The welcomed connection, once there is one (callers bound the wait)."""
        while True:
            if self._terminal is not None:
                raise self._terminal
            if self._stopped or self._closing:
                raise ClientClosedError(f"the client is closed ({self._last_close})")
            if self._task is None:
                raise RuntimeError("call start() (or use `async with`) first")
            if self._ready and self._ws is not None:
                return self._ws
            await self._next_change()

    # -- the connection loop ---------------------------------------------------

    async def _run(self) -> None:
        code: int | None = None
        reason = ""
        try:
            while not self._closing:
                away = False  # the attempt only found that nothing answers yet (see wsclient.backoff)
                try:
                    code, reason = await self._connection()
                except NotLoggedInError as exc:
                    code, reason = CLOSE_UNAUTHENTICATED, str(exc)
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    code, reason = None, f"HTTP {status} at the handshake"
                    if status in (401, 403):
                        code = CLOSE_UNAUTHENTICATED if status == 401 else CLOSE_FORBIDDEN
                    away = status in PROXY_UPSTREAM_AWAY
                except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as exc:
                    code, reason = None, f"{type(exc).__name__}: {exc}"
                    away = refused(exc)
                except Exception as exc:  # a failing ticket provider must not kill the loop
                    logger.warning("connection attempt failed: %r", exc)
                    code, reason = None, f"{type(exc).__name__}: {exc}"
                if self._closing:
                    break
                if code in TERMINAL_CLOSE_CODES:
                    self._terminal = TerminalError(code or 0, reason)
                    break
                self.stats.disconnects += 1
                self._last_close = f"last close: {code} {reason}".rstrip()
                self._hub.emit({"type": "disconnected", "code": code, "reason": reason})
                if not self.reconnect:
                    break
                if code == CLOSE_SERVICE_RESTART:
                    self.backoff.restarting()
                    away = True
                delay = self.backoff.next_delay(server_away=away)
                self._hub.emit({"type": "reconnecting", "attempt": self.backoff.attempt, "delay": delay})
                logger.info("reconnecting in %.2fs (attempt %d): %s %s", delay, self.backoff.attempt, code, reason)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            self._stopped = True
            self._ready = False
            self._fail_pending(self._terminal or ClientClosedError("the client is closed"))
            self._hub.emit(
                {
                    "type": "closed",
                    "code": code,
                    "reason": reason,
                    "terminal": self._terminal is not None,
                }
            )
            self._notify()
            await self._hub.close()

    async def _connection(self) -> tuple[int | None, str]:
        """One connection from handshake to close; returns the close code and reason."""
        url = self.url
        if self._ticket_provider is not None:
            url = with_query(url, ticket=await self._ticket_provider())
        ws = await connect(
            url,
            origin=Origin(self.origin) if self.origin else None,
            additional_headers=self._headers,
            open_timeout=self.open_timeout,
            ping_interval=self.ping_interval,
            close_timeout=5,
        )
        self._ws = ws
        try:
            welcome = await asyncio.wait_for(self._receive(ws), self.open_timeout)
            if welcome is None or welcome.get("type") != "welcome":
                await ws.close(1002, "expected welcome")
                return ws.close_code, f"protocol error: expected welcome, got {welcome!r}"
            await self._on_welcome(ws, welcome)
            while True:
                frame = await self._receive(ws)
                if frame is not None:
                    self._dispatch(frame)
        except ConnectionClosed:
            return ws.close_code, ws.close_reason or ""
        finally:
            self._ready = False
            self._ws = None
            self._fail_pending(ConnectionLostError("the connection closed before the reply arrived"))
            self._notify()
            await ws.close()

    async def _receive(self, ws: ClientConnection) -> Event | None:
        """The next JSON object frame, or ``None`` for anything else (logged)."""
        raw = await ws.recv()
        try:
            frame = json.loads(raw)
        except ValueError:
            logger.warning("ignored a frame that is not JSON: %.80r", raw)
            return None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            logger.warning("ignored a frame without a type: %.80r", raw)
            return None
        return frame

    async def _on_welcome(self, ws: ClientConnection, welcome: Event) -> None:
        self.backoff.reset()
        self.stats.connects += 1
        self.user = welcome.get("user")
        self.connection_id = welcome.get("connection_id")
        self._hub.emit(welcome)
        await self._resubscribe(ws)
        self._ready = True
        self._notify()

    async def _resubscribe(self, ws: ClientConnection) -> None:
        """Subscribe again to every topic from the newest id seen (the reader handles the replies)."""
        for topic in list(self._subscriptions):
            frame: Event = {"type": "subscribe", "topic": topic}
            since = self._tracker.last(topic)
            if since is not None:
                frame["since"] = since
            future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
            on_reply = functools.partial(self._resubscribed, topic)
            frame["ref"] = ref = next(self._refs)
            self._pending[ref] = _Pending("subscribed", topic, ref, future, on_reply, replayed=since is not None)
            await ws.send(json.dumps(frame))

    def _resubscribed(self, topic: str, frame: Event) -> None:
        """Handle the reply to a resubscription; the ``error`` event (if any) is emitted anyway.

        ``unavailable`` (database or Redis down) reconnects, with backoff, to try
        again; any other refusal (say, ``forbidden`` now) drops the topic.
        """
        if frame["type"] != "error":
            return
        logger.warning("resubscribing to %s failed: %s", topic, frame)
        ws = self._ws
        if frame.get("code") == "unavailable" and ws is not None:
            self._closer = asyncio.ensure_future(ws.close(1011, "resubscribing failed"))
        else:
            self._subscriptions.pop(topic, None)

    def _dispatch(self, frame: Event) -> None:
        kind = frame["type"]
        if kind == "message":
            if not self._is_new(frame):
                return
            self.stats.messages += 1
        if kind in REPLY_TYPES:
            self._resolve(frame)
        self._hub.emit(frame)
        if kind == "more_history":
            self._continue_history(frame)

    def _continue_history(self, frame: Event) -> None:
        """A replay stopped at the server's limit: subscribe again from the newest id seen.

        The server holds the topic's live messages until a replay reaches its
        newest one, so continuing from the last id received loses and repeats
        nothing. The reply is handled like a resubscription's.
        """
        topic, ws = frame.get("topic"), self._ws
        if not isinstance(topic, str) or topic not in self._subscriptions or ws is None:
            return
        since = self._tracker.last(topic)
        if since is None:
            since = int(frame.get("since") or 0)
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        on_reply = functools.partial(self._resubscribed, topic)
        ref = next(self._refs)
        self._pending[ref] = _Pending("subscribed", topic, ref, future, on_reply, replayed=True)
        self._tracker.replay_from(topic, since)
        frame = {"type": "subscribe", "topic": topic, "since": since, "ref": ref}
        send = asyncio.ensure_future(ws.send(json.dumps(frame)))
        self._sends.add(send)
        send.add_done_callback(self._sent)

    def _sent(self, send: asyncio.Future[None]) -> None:
        self._sends.discard(send)
        if not send.cancelled() and send.exception() is not None:
            logger.info("could not continue a replay: %r (the reconnect resubscribes)", send.exception())

    def _subscribed(self, frame: Event, *, replayed: bool) -> None:
        topic, last_id = frame.get("topic"), frame.get("last_id")
        if isinstance(topic, str) and isinstance(last_id, int):
            # Followed from the reply on: its replay (and any more_history) comes before subscribe() resumes.
            self._subscriptions[topic] = None
            self._tracker.subscribed(topic, last_id, replayed=replayed)

    def _is_new(self, frame: Event) -> bool:
        """De-duplicate by (topic, id) (see :mod:`wsclient.tracking`)."""
        topic, message_id = frame.get("topic"), frame.get("id")
        if not isinstance(topic, str) or not isinstance(message_id, int):
            return True
        return self._tracker.accept(topic, message_id)
