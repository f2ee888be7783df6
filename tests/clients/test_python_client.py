"""The Python client (wsclient) and its CLI against the real services under Daphne.

Nothing is mocked: PostgreSQL, Redis and both Daphne processes are real.
Only the backoff and the id tracker, which are pure, are tested on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async

from tests.support.servers import DaphneServer
from tests.support.users import PASSWORD, make_user, session_key_for
from wsclient import (
    Backoff,
    ClientClosedError,
    EventStream,
    ServerError,
    TerminalError,
    WebLogin,
    WsClient,
    ceiling,
    full_jitter,
)
from wsclient.client import refused
from wsclient.events import Event
from wsclient.tracking import MessageTracker

ROOT = Path(__file__).resolve().parents[2]


def _fast_backoff() -> Backoff:
    """Short delays, so reconnects happen within a test's time."""
    return Backoff(base=0.05, cap=0.5)


# -- helpers -------------------------------------------------------------------


async def _session_key(username: str) -> tuple[dict[str, Any], str]:
    user = await sync_to_async(make_user)(username)
    key = await sync_to_async(session_key_for)(user)
    return {"id": user.pk, "username": username}, key


def _client(ws_server: DaphneServer, **options: Any) -> WsClient:
    options.setdefault("backoff", _fast_backoff())
    options.setdefault("request_timeout", 10.0)
    options.setdefault("connect_timeout", 15.0)
    return WsClient(f"{ws_server.ws_url}/ws/", **options)


async def _next(stream: EventStream, *types: str, wait: float = 10) -> Event:
    async with asyncio.timeout(wait):
        return await stream.get(*types)


async def _messages(stream: EventStream, count: int, wait: float = 15) -> list[Event]:
    """The next ``count`` message events, then a short quiet period must show no more."""
    found = [await _next(stream, "message", wait=wait) for _ in range(count)]
    try:
        extra = await _next(stream, "message", wait=0.5)
    except TimeoutError:
        return found
    raise AssertionError(f"more messages than expected: {found} then {extra}")


def _ws_server_healthy(ws_server: DaphneServer) -> bool:
    try:
        return httpx.get(f"{ws_server.http_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


async def _ensure_running(ws_server: DaphneServer) -> None:
    """Leave the session's ws server up and healthy for the tests after this one."""
    if ws_server.process is None or ws_server.process.poll() is not None:
        ws_server.process = None
        await asyncio.to_thread(ws_server.start)
    assert await asyncio.to_thread(_ws_server_healthy, ws_server)


# -- pure: backoff and id tracking -----------------------------------------------


def test_backoff_ceiling_is_exponential_and_capped() -> None:
    assert [ceiling(n, base=0.5, cap=10) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert ceiling(10_000, base=0.5, cap=30) == 30  # no float overflow
    with pytest.raises(ValueError, match="attempt"):
        ceiling(-1, base=1, cap=1)
    with pytest.raises(ValueError, match="base and cap"):
        Backoff(base=-1)


def test_full_jitter_is_uniform_over_zero_to_the_ceiling() -> None:
    rng = random.Random(1234)
    for attempt in range(12):
        top = ceiling(attempt, base=0.25, cap=5)
        samples = [full_jitter(attempt, base=0.25, cap=5, rng=rng) for _ in range(400)]
        assert all(0 <= sample <= top for sample in samples)
        # Full jitter: the whole range is used, not just the upper half (equal jitter).
        assert min(samples) < 0.1 * top
        assert max(samples) > 0.9 * top
        assert 0.4 * top < sum(samples) / len(samples) < 0.6 * top


def test_backoff_is_reproducible_with_a_seed_and_resets() -> None:
    first = Backoff(base=1, cap=8, rng=random.Random(7))
    second = Backoff(base=1, cap=8, rng=random.Random(7))
    delays = [first.next_delay() for _ in range(10)]
    assert delays == [second.next_delay() for _ in range(10)]
    assert first.attempt == 10
    assert all(delay <= min(8, 2**n) for n, delay in enumerate(delays))
    assert max(delays[4:]) <= 8
    first.reset()
    assert first.attempt == 0
    assert first.next_delay() <= 1


class _Clock:
    """A clock the test moves by hand (the backoff's restart window is a span of time)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_after_a_restart_refused_attempts_stay_under_the_restart_cap() -> None:
    clock = _Clock()
    backoff = Backoff(base=0.5, cap=30, restart_cap=2, restart_window=30, rng=random.Random(3), clock=clock)
    backoff.restarting()
    delays = [backoff.next_delay(server_away=True) for _ in range(200)]
    assert backoff.attempt == 200  # counted as attempts all the same
    assert all(0 <= delay <= 2 for delay in delays)
    assert max(delays) > 1.8  # full jitter over [0, restart_cap]: the whole range, not a fixed delay
    assert all(delay <= 0.5 * 2**n for n, delay in enumerate(delays[:3]))  # the usual ceiling while it is lower
    # A failure that is not "nothing listens" (a timeout, 1013, 4029: the server is there but busy) grows as usual.
    assert max(backoff.next_delay() for _ in range(50)) > 20


def test_the_restart_window_ends_and_a_welcome_closes_it() -> None:
    clock = _Clock()
    backoff = Backoff(base=0.5, cap=30, restart_cap=2, restart_window=30, rng=random.Random(5), clock=clock)
    for _ in range(10):
        backoff.next_delay()
    # Refused without a 1012 before it (a server that is simply down): the usual growth.
    assert max(backoff.next_delay(server_away=True) for _ in range(50)) > 20
    backoff.restarting()
    clock.now += 29.9
    assert backoff.in_restart_window()
    assert max(backoff.next_delay(server_away=True) for _ in range(50)) <= 2
    clock.now += 0.2  # the window is over: a server away that long backs off as usual
    assert not backoff.in_restart_window()
    assert max(backoff.next_delay(server_away=True) for _ in range(50)) > 20
    backoff.restarting()
    backoff.reset()  # a welcome: the restart is over
    assert not backoff.in_restart_window()
    with pytest.raises(ValueError, match="restart_cap"):
        Backoff(restart_cap=-1)


async def test_refused_is_nothing_listening_only() -> None:
    from tests.support.servers import free_port

    port = free_port()
    with pytest.raises(OSError, match="Connect call failed") as nobody:
        await asyncio.open_connection("127.0.0.1", port)
    assert refused(nobody.value)
    # asyncio's joined error when every address of a name (::1 and 127.0.0.1) refused, or not all of them.
    both = (
        f"[Errno 111] Connect call failed ('::1', {port}, 0, 0), [Errno 111] Connect call failed ('127.0.0.1', {port})"
    )
    assert refused(OSError(f"Multiple exceptions: {both}"))
    unreachable = "[Errno 101] Network is unreachable, [Errno 111] Connect call failed ('127.0.0.1', 1)"
    assert not refused(OSError(f"Multiple exceptions: {unreachable}"))
    assert not refused(TimeoutError("timed out during opening handshake"))
    assert not refused(ConnectionResetError("reset"))


def test_tracker_drops_what_it_has_seen_and_follows_subscribed() -> None:
    tracker = MessageTracker()
    tracker.subscribed("room.a", 5, replayed=False)
    assert not tracker.accept("room.a", 5)
    assert tracker.accept("room.a", 6)
    assert not tracker.accept("room.a", 6)
    assert tracker.accept("room.b", 1)  # topics are independent
    tracker.replay_from("room.a", 3)  # an explicit since: the replay is new again
    assert [tracker.accept("room.a", n) for n in (4, 5, 6, 6)] == [True, True, True, False]
    assert tracker.duplicates == 3
    tracker.subscribed("room.a", 2, replayed=True)  # the server's history is shorter: it was reset
    assert tracker.last("room.a") == 2
    assert tracker.accept("room.a", 3)


# -- connecting ------------------------------------------------------------------

db = pytest.mark.django_db(transaction=True)


@db
async def test_connects_with_a_session_cookie(ws_server: DaphneServer) -> None:
    alice, key = await _session_key("py_cookie")
    async with _client(ws_server, session_cookie=key) as client:
        assert client.connected
        assert client.user == alice
        assert isinstance(client.connection_id, str)
        assert await client.whoami() == alice
        await client.ping()
    assert not client.connected


@db
async def test_connects_with_a_fresh_ticket_for_every_connection(
    web_server: DaphneServer, ws_server: DaphneServer
) -> None:
    await sync_to_async(make_user)("py_ticket")
    web = WebLogin(f"{web_server.http_url}/api/ws-ticket", "py_ticket", PASSWORD)
    tickets: list[str] = []

    async def provider() -> str:
        ticket = await web.ticket_provider()
        tickets.append(ticket)
        return ticket

    for _ in range(2):  # a ticket is single-use: each connection needs its own
        async with _client(ws_server, ticket_provider=provider) as client:
            assert client.user is not None
            assert client.user["username"] == "py_ticket"
    assert len(tickets) == 2
    assert tickets[0] != tickets[1]


@db
async def test_event_api_callbacks_and_streams(ws_server: DaphneServer) -> None:
    _, key = await _session_key("py_events")
    seen: list[str] = []
    async_seen: list[str] = []

    async def async_handler(event: Event) -> None:
        async_seen.append(event["type"])

    client = _client(ws_server, session_cookie=key)
    client.on("*", lambda event: seen.append(event["type"]))
    remove = client.on("pong", async_handler)
    stream = client.events()
    await client.start()
    assert (await _next(stream)).get("type") == "welcome"
    await client.ping()
    assert (await _next(stream))["type"] == "pong"
    remove()
    await client.ping()
    await client.close()
    assert [event["type"] async for event in stream] == ["pong", "closed"]
    assert seen == ["welcome", "pong", "pong", "closed"]
    assert async_seen == ["pong"]


# -- topics ----------------------------------------------------------------------


@db
async def test_publish_ack_and_delivery_between_two_clients(ws_server: DaphneServer) -> None:
    _, alice_key = await _session_key("py_alice")
    bob, bob_key = await _session_key("py_bob")
    topic = "room.py-two-clients"
    async with (
        _client(ws_server, session_cookie=alice_key) as alice_client,
        _client(ws_server, session_cookie=bob_key) as bob_client,
    ):
        alice_events, bob_events = alice_client.events(), bob_client.events()
        assert await alice_client.subscribe(topic) == 0
        assert await bob_client.subscribe(topic) == 0
        first = await alice_client.publish(topic, "hello bob")
        second = await bob_client.publish(topic, "hello alice")
        assert (first, second) == (1, 2)
        for events in (alice_events, bob_events):  # both get both, the sender included, in id order
            got = await _messages(events, 2)
            assert [(m["id"], m["author"]["username"], m["text"]) for m in got] == [
                (1, "py_alice", "hello bob"),
                (2, "py_bob", "hello alice"),
            ]
        assert alice_client.last_id(topic) == bob_client.last_id(topic) == 2

        with pytest.raises(ServerError) as refused:
            await alice_client.subscribe(f"user.{bob['id']}")
        assert refused.value.code == "forbidden"
        with pytest.raises(ServerError) as bad:
            await alice_client.publish("Not A Topic", "x")
        assert bad.value.code == "bad_topic"

        await bob_client.unsubscribe(topic)
        assert bob_client.subscriptions == []
        await alice_client.publish(topic, "bob left")
        assert [m["id"] for m in await _messages(alice_events, 1)] == [3]
        await asyncio.sleep(0.2)
        leftovers = [await _next(bob_events) for _ in range(bob_events.pending())]
        assert [event for event in leftovers if event["type"] == "message"] == []


@db
async def test_subscribe_with_since_replays_in_order(ws_server: DaphneServer) -> None:
    _, key = await _session_key("py_since")
    topic = "room.py-since"
    async with _client(ws_server, session_cookie=key) as client:
        for n in range(1, 6):
            assert await client.publish(topic, f"m{n}") == n
        events = client.events()
        assert await client.subscribe(topic, since=2) == 5
        assert [m["text"] for m in await _messages(events, 3)] == ["m3", "m4", "m5"]
        assert client.last_id(topic) == 5


@db
async def test_reconnects_after_a_ws_restart_and_recovers_missed_messages_once(
    web_server: DaphneServer, ws_server: DaphneServer
) -> None:
    await sync_to_async(make_user)("py_listener")
    _, publisher_key = await _session_key("py_publisher")
    topic = "room.py-restart"
    web = WebLogin(f"{web_server.http_url}/api/ws-ticket", "py_listener", PASSWORD)
    listener = _client(ws_server, ticket_provider=web.ticket_provider)
    events = listener.events()
    try:
        await listener.start()
        await listener.subscribe(topic)
        assert await listener.publish(topic, "before") == 1
        assert [m["text"] for m in await _messages(events, 1)] == ["before"]

        await asyncio.to_thread(ws_server.stop)
        disconnected = await _next(events, "disconnected")
        assert disconnected["code"] != 4401
        assert not listener.connected
        # While the ws service is down: messages over HTTP (the web service is up).
        http_ids = [(await asyncio.to_thread(web.post_message, topic, f"http {n}"))["id"] for n in (1, 2)]
        assert http_ids == [2, 3]
        await asyncio.sleep(0.3)  # a few failed attempts with backoff
        await asyncio.to_thread(ws_server.start)
        # Right after the restart: messages over WebSocket from another client,
        # racing the listener's reconnect (either order must give the same result).
        async with _client(ws_server, session_cookie=publisher_key) as publisher:
            assert [await publisher.publish(topic, f"ws {n}") for n in (1, 2)] == [4, 5]

        recovered = await _messages(events, 4, wait=30)
        assert [(m["id"], m["text"]) for m in recovered] == [(2, "http 1"), (3, "http 2"), (4, "ws 1"), (5, "ws 2")]
        assert listener.connected
        assert listener.stats.connects == 2
        assert listener.subscriptions == [topic]
        # Still live after the reconnect.
        assert await listener.publish(topic, "after") == 6
        assert [m["id"] for m in await _messages(events, 1)] == [6]
    finally:
        await listener.close()
        events.close()
        await _ensure_running(ws_server)


@db
async def test_a_service_restart_is_retried_under_the_restart_cap_and_rejoined_at_once(
    ws_server: DaphneServer,
) -> None:
    """SIGTERM (drain, 1012), down for a while, back: the refused attempts never grow past ``restart_cap``.

    With the usual growth (base 0.05 s) the ceiling passes 1.6 s within the
    outage, so the first attempt after the restart could come seconds later.
    """
    _, key = await _session_key("py_restart_cap")
    backoff = Backoff(base=0.05, cap=30, restart_cap=0.2, restart_window=30)
    client = _client(ws_server, session_cookie=key, backoff=backoff)
    events = client.events()
    seen: list[Event] = []
    client.on("*", seen.append)
    try:
        await client.start()
        await asyncio.to_thread(ws_server.stop)
        assert (await _next(events, "disconnected"))["code"] == 1012
        await asyncio.sleep(2.5)  # down: attempts are refused
        await asyncio.to_thread(ws_server.start)  # returns once /healthz answers
        listening = asyncio.get_running_loop().time()
        await _next(events, "welcome", wait=5)
        assert asyncio.get_running_loop().time() - listening < 1.0  # one restart_cap, plus slack
        retries = [event for event in seen if event["type"] == "reconnecting"]
        assert len(retries) >= 10  # well past the attempt whose usual ceiling is 1.6 s
        assert all(0 <= event["delay"] <= 0.2 for event in retries)
        failures = [event for event in seen if event["type"] == "disconnected"]
        assert failures[0]["code"] == 1012
        assert all("ConnectionRefusedError" in event["reason"] for event in failures[1:])
    finally:
        await client.close()
        events.close()
        await _ensure_running(ws_server)


async def _retries_against(status: int, attempts: int = 8) -> list[Event]:
    """The ``reconnecting`` events of a client in a restart window whose handshakes all get ``status``.

    The server is a real loopback HTTP server answering every request the way
    nginx answers when no upstream ws process is there (502 Bad Gateway).
    """

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status} Upstream Away\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backoff = Backoff(base=0.05, cap=30, restart_cap=0.2, restart_window=30, rng=random.Random(1))
    backoff.restarting()  # as after a close with 1012
    client = WsClient(f"ws://127.0.0.1:{port}/ws/", backoff=backoff, connect_timeout=30.0)
    retries: list[Event] = []
    enough = asyncio.Event()

    def on_event(event: Event) -> None:
        if event["type"] == "reconnecting":
            retries.append(event)
            if len(retries) >= attempts:
                enough.set()

    client.on("*", on_event)
    starting = asyncio.create_task(client.start())
    try:
        async with asyncio.timeout(30):
            await enough.wait()
    finally:
        await client.close()
        with contextlib.suppress(TimeoutError, ClientClosedError, asyncio.CancelledError):
            await starting
        server.close()
        await server.wait_closed()
    return retries


async def test_a_proxys_502_503_or_504_within_a_restart_window_counts_as_the_server_being_away() -> None:
    """Behind the compose proxy a restarting ws service answers 502, not a refused connection."""
    for status in (502, 503, 504):
        retries = await _retries_against(status)
        assert all(event["delay"] <= 0.2 for event in retries), (status, [event["delay"] for event in retries])


async def test_other_handshake_statuses_grow_the_delay_as_usual() -> None:
    retries = await _retries_against(500)
    assert max(event["delay"] for event in retries) > 0.2  # base 0.05 s doubled 7 times, full jitter


# -- stopping for good -------------------------------------------------------------


@db
async def test_a_refused_ticket_stops_without_retrying(ws_server: DaphneServer) -> None:
    calls = 0

    async def forged() -> str:
        nonlocal calls
        calls += 1
        return "forged-ticket"

    client = _client(ws_server, ticket_provider=forged)
    events = client.events()
    with pytest.raises(TerminalError) as refused:
        await client.start()
    assert refused.value.code == 4401
    closed = [event async for event in events]
    assert [event["type"] for event in closed] == ["closed"]
    assert closed[0]["terminal"] is True
    assert closed[0]["code"] == 4401
    await asyncio.sleep(0.5)  # The fast backoff would have retried several times by now
    assert calls == 1
    with pytest.raises(TerminalError):
        await client.wait_closed()


@db
async def test_logging_out_closes_with_4401_and_the_client_stops(
    web_server: DaphneServer, ws_server: DaphneServer
) -> None:
    await sync_to_async(make_user)("py_logout")
    web = WebLogin(f"{web_server.http_url}/api/ws-ticket", "py_logout", PASSWORD)
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return await web.ticket_provider()

    client = _client(ws_server, ticket_provider=provider)
    events = client.events()
    await client.start()
    await client.subscribe("room.py-logout")
    await asyncio.to_thread(web.logout)
    closed = await _next(events, "closed", "reconnecting", wait=5)
    assert closed["type"] == "closed"
    assert (closed["code"], closed["terminal"]) == (4401, True)
    async with asyncio.timeout(5):
        with pytest.raises(TerminalError):
            await client.wait_closed()
    with pytest.raises(TerminalError):
        await client.publish("room.py-logout", "too late")
    assert calls == 1
    await client.close()


@db
async def test_a_foreign_origin_is_refused_for_good(ws_server: DaphneServer) -> None:
    _, key = await _session_key("py_origin")
    client = _client(ws_server, session_cookie=key, origin="https://evil.example")
    with pytest.raises(TerminalError) as refused:
        await client.start()
    assert refused.value.code == 4403


@db
async def test_an_unreachable_server_is_retried_with_backoff_until_the_deadline() -> None:
    from tests.support.servers import free_port

    client = WsClient(
        f"ws://127.0.0.1:{free_port()}/ws/",
        session_cookie="whatever",
        backoff=Backoff(base=0.02, cap=0.1),
        connect_timeout=1.0,
    )
    events = client.events()
    with pytest.raises(TimeoutError):
        await client.start()
    seen = [event async for event in events]
    retries = [event for event in seen if event["type"] == "reconnecting"]
    assert len(retries) >= 3
    assert all(0 <= event["delay"] <= 0.1 for event in retries)
    assert [event["attempt"] for event in retries] == list(range(1, len(retries) + 1))
    assert seen[-1]["type"] == "closed"
    assert seen[-1]["terminal"] is False


# -- the CLI -----------------------------------------------------------------------


async def _cli(*args: str, env: dict[str, str], stdin: bytes | None = None, wait: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsclient",
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(wait):
            out, err = await process.communicate(stdin)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("WSCLIENT_")}
    env.update(extra)
    return env


async def _lines(process: asyncio.subprocess.Process, count: int, wait: float = 20) -> list[dict[str, Any]]:
    assert process.stdout is not None
    found = []
    async with asyncio.timeout(wait):
        for _ in range(count):
            line = await process.stdout.readline()
            assert line, "listen exited early"
            found.append(json.loads(line))
    return found


@db
async def test_cli_listen_and_publish(web_server: DaphneServer, ws_server: DaphneServer) -> None:
    _, key = await _session_key("py_cli")
    topic = "room.py-cli"
    env = _cli_env(WSCLIENT_SESSION=key)
    url = f"{ws_server.ws_url}/ws/"

    code, out, err = await _cli("--url", url, "publish", topic, "first", env=env)
    assert code == 0, err
    assert json.loads(out) == {"type": "ack", "topic": topic, "id": 1}
    code, out, err = await _cli("--url", url, "publish", topic, "-", env=env, stdin=b"second\nthird\n")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2, 3]

    listen = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wsclient",
        "--url",
        url,
        "listen",
        topic,
        "--since",
        "1",
        "--count",
        "3",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        replayed = await _lines(listen, 2)
        assert [(m["type"], m["id"], m["text"]) for m in replayed] == [
            ("message", 2, "second"),
            ("message", 3, "third"),
        ]
        # Listening is live now: a publish through the CLI logging in with a ticket arrives too.
        code, out, err = await _cli(
            "--url",
            url,
            "--ticket-url",
            f"{web_server.http_url}/api/ws-ticket",
            "--username",
            "py_cli",
            "publish",
            topic,
            "fourth",
            env=_cli_env(WSCLIENT_PASSWORD=PASSWORD),
        )
        assert code == 0, err
        assert json.loads(out)["id"] == 4
        live = await _lines(listen, 1)
        assert (live[0]["id"], live[0]["text"], live[0]["author"]["username"]) == (4, "fourth", "py_cli")
        async with asyncio.timeout(15):
            rest, err_bytes = await listen.communicate()
        assert listen.returncode == 0, err_bytes.decode()
        assert rest == b""  # --count 3: exactly three lines
        assert "subscribed room.py-cli" in err_bytes.decode()
    finally:
        if listen.returncode is None:
            listen.kill()
            await listen.communicate()


@db
async def test_cli_whoami_and_exit_codes(web_server: DaphneServer, ws_server: DaphneServer) -> None:
    user, key = await _session_key("py_cli_codes")
    url = f"{ws_server.ws_url}/ws/"
    code, out, err = await _cli("--url", url, "whoami", env=_cli_env(WSCLIENT_SESSION=key))
    assert (code, json.loads(out)) == (0, {"type": "whoami", "user": user}), err

    code, out, err = await _cli("--url", url, "whoami", env=_cli_env(WSCLIENT_SESSION="not-a-session"))
    assert (code, out) == (3, "")
    assert "4401" in err
    ticket_url = f"{web_server.http_url}/api/ws-ticket"
    code, _, err = await _cli(
        "--url", url, "--ticket-url", ticket_url, "--username", "py_cli_codes", "--password", "wrong", "whoami",
        env=_cli_env(),
    )  # fmt: skip
    assert code == 3, err
    code, _, err = await _cli("--url", url, "whoami", env=_cli_env())
    assert code == 2
    assert "--session-cookie" in err
