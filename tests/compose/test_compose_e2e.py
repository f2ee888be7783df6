"""The whole stack in real containers, driven through the published proxy port only.

One compose project for the module (tests.compose.conftest.compose_stack);
the tests run in file order and share it: the ones that stop services come
last, and the scaling test ends the module with two ws replicas. Every wait is
bounded. Traffic goes to 127.0.0.1 (the proxy) or, through ``docker compose
exec``, to the project's own containers.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Origin

from tests.compose.support import ComposeProject, Superuser, requires_engine, wait_until

pytestmark = requires_engine()

CLOSE_UNAUTHENTICATED = 4401
WS_GRACE_SECONDS = 20.0
RECEIVE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """A browser-like session obtained through the proxy."""

    cookies: dict[str, str]
    user: dict[str, Any]

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())


def http_client(stack: ComposeProject) -> httpx.Client:
    """A client for the proxy only; proxy variables of the environment are ignored."""
    return httpx.Client(base_url=stack.base_url, timeout=15.0, follow_redirects=False, trust_env=False)


def open_socket(stack: ComposeProject, *, query: str = "", cookie: str | None = None) -> connect:
    """A WebSocket handshake through the proxy with an allowed Origin."""
    headers = {"Cookie": cookie} if cookie else None
    return connect(
        stack.ws_url + query,
        origin=Origin(stack.base_url),
        additional_headers=headers,
        proxy=None,
        open_timeout=15,
        close_timeout=5,
    )


async def receive_json(socket: ClientConnection, within: float = RECEIVE_TIMEOUT) -> dict[str, Any]:
    """The next frame, decoded; fails when none arrives ``within`` seconds."""
    async with asyncio.timeout(within):
        message: dict[str, Any] = json.loads(await socket.recv())
    return message


async def connect_welcomed(
    stack: ComposeProject, cookie: str, *, within: float = 30.0
) -> tuple[ClientConnection, dict[str, Any]]:
    """An open, authenticated socket and its welcome, retrying refused attempts for ``within`` seconds.

    For the moments after a restart: a proxy that still has a stopped replica's
    address cached answers 502, and the first connects after a Redis restart
    can be refused while the ws service's pool drops its dead connections.
    """
    refusals: list[str] = []
    deadline = time.monotonic() + within
    while True:
        socket: ClientConnection | None = None
        try:
            socket = await open_socket(stack, cookie=cookie)
            welcome = await receive_json(socket)
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError) as exc:
            refusals.append(repr(exc))
            if socket is not None:
                await socket.close()
        else:
            assert welcome["type"] == "welcome", welcome
            return socket, welcome
        assert time.monotonic() < deadline, f"no welcome within {within:g}s: {refusals}"
        await asyncio.sleep(0.5)


def service_states(stack: ComposeProject) -> dict[str, list[dict[str, Any]]]:
    """``State`` of every container, by service."""
    states: dict[str, list[dict[str, Any]]] = {}
    for service in ("db", "redis", "migrate", "web", "ws", "proxy"):
        states[service] = [container["State"] for container in stack.containers(service, all_states=True)]
    return states


@pytest.fixture(scope="module")
def superuser(compose_stack: ComposeProject, superuser_account: Superuser) -> Superuser:
    """Created exactly as the README says: createsuperuser --noinput with DJANGO_SUPERUSER_*."""
    result = compose_stack.exec("web", "python", "-m", "django", "createsuperuser", "--noinput")
    assert "Superuser created successfully" in result.stdout, result.stdout + result.stderr
    return superuser_account


@pytest.fixture(scope="module")
def logged_in(compose_stack: ComposeProject, superuser: Superuser) -> LoggedIn:
    """Log in through the proxy with Django's login form, as a browser would."""
    with http_client(compose_stack) as client:
        page = client.get("/accounts/login/")
        assert page.status_code == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        response = client.post(
            "/accounts/login/",
            data={"username": superuser.username, "password": superuser.password, "csrfmiddlewaretoken": token[1]},
            # Django compares Origin with the Host the proxy forwarded (port included).
            headers={"Origin": compose_stack.base_url, "Referer": f"{compose_stack.base_url}/accounts/login/"},
        )
        assert response.status_code == 302, response.text[:500]
        assert response.headers["location"] == "/"
        whoami = client.get("/api/whoami")
        assert whoami.status_code == 200, whoami.text
        cookies = {name: value for name, value in client.cookies.items() if value}
    assert {"sessionid", "csrftoken"} <= set(cookies)
    user: dict[str, Any] = whoami.json()["user"]
    return LoggedIn(cookies=cookies, user=user)


def test_every_service_is_healthy(compose_stack: ComposeProject) -> None:
    states = service_states(compose_stack)
    (migrate,) = states.pop("migrate")
    assert (migrate["Status"], migrate["ExitCode"]) == ("exited", 0)
    for service, containers in states.items():
        assert len(containers) == 1, service
        assert containers[0]["Status"] == "running", service
        assert containers[0]["Health"]["Status"] == "healthy", service


def test_web_health_endpoints_through_the_proxy(compose_stack: ComposeProject) -> None:
    with http_client(compose_stack) as client:
        live = client.get("/healthz")
        ready = client.get("/readyz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200, ready.text
    assert {name: check["ok"] for name, check in ready.json()["checks"].items()} == {"database": True, "redis": True}


@pytest.mark.parametrize(("service", "port"), [("web", 8000), ("ws", 8001)])
def test_health_endpoints_inside_the_containers(compose_stack: ComposeProject, service: str, port: int) -> None:
    for path in ("/healthz", "/readyz"):
        status, line = compose_stack.probe(service, f"http://127.0.0.1:{port}{path}")
        assert status == 200, line


def test_static_files_are_served_from_the_manifest(compose_stack: ComposeProject) -> None:
    with http_client(compose_stack) as client:
        page = client.get("/admin/login/")
        stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', page.text)
        assert stylesheet, "the admin page should link the hashed file from collectstatic's manifest"
        css = client.get(stylesheet[1])
    assert css.status_code == 200
    assert "immutable" in css.headers.get("cache-control", "")


def test_proxy_sets_forwarding_headers_itself(compose_stack: ComposeProject) -> None:
    spoofed = {
        "Daphne-Root-Path": "/evil",
        "X-Request-ID": "chosen-by-the-client",
        "X-Forwarded-Host": "attacker.example",
        "X-Forwarded-For": "203.0.113.9",
    }
    with http_client(compose_stack) as client:
        page = client.get("/accounts/login/", headers=spoofed)
    assert page.status_code == 200
    # A root path reaching Daphne would prefix every reversed URL.
    assert 'action="/accounts/login/"' in page.text
    assert "/evil/" not in page.text
    # The request id is the proxy's own ($request_id), echoed by the web service.
    assert re.fullmatch(r"[0-9a-f]{32}", page.headers["x-request-id"])


def test_superuser_logs_in_through_the_proxy(logged_in: LoggedIn, superuser: Superuser) -> None:
    assert logged_in.user["username"] == superuser.username
    assert isinstance(logged_in.user["id"], int)


async def test_websocket_with_session_cookie_gets_the_welcome(
    compose_stack: ComposeProject, logged_in: LoggedIn
) -> None:
    async with open_socket(compose_stack, cookie=logged_in.cookie_header) as socket:
        welcome = await receive_json(socket)
    assert welcome["type"] == "welcome"
    assert welcome["user"] == logged_in.user
    assert welcome["connection_id"]


async def test_websocket_without_credentials_is_closed_4401(compose_stack: ComposeProject) -> None:
    async with open_socket(compose_stack) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await receive_json(socket)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_UNAUTHENTICATED


async def test_ticket_connects_once(compose_stack: ComposeProject, logged_in: LoggedIn) -> None:
    async with httpx.AsyncClient(
        base_url=compose_stack.base_url, cookies=logged_in.cookies, timeout=15.0, trust_env=False
    ) as client:
        response = await client.post(
            "/api/ws-ticket",
            headers={"X-CSRFToken": logged_in.cookies["csrftoken"], "Origin": compose_stack.base_url},
        )
    assert response.status_code == 200, response.text
    ticket = response.json()["ticket"]

    async with open_socket(compose_stack, query=f"?ticket={ticket}") as socket:
        welcome = await receive_json(socket)
    assert (welcome["type"], welcome["user"]) == ("welcome", logged_in.user)

    async with open_socket(compose_stack, query=f"?ticket={ticket}") as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await receive_json(socket)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_UNAUTHENTICATED


async def test_readiness_follows_redis(compose_stack: ComposeProject, logged_in: LoggedIn) -> None:
    def ws_readiness_is(expected: int) -> bool | None:
        status, _ = compose_stack.probe("ws", "http://127.0.0.1:8001/readyz")
        return True if status == expected else None

    def web_readiness_is(expected: int) -> bool | None:
        with http_client(compose_stack) as client:
            return True if client.get("/readyz").status_code == expected else None

    def during_outage() -> None:
        wait_until(lambda: ws_readiness_is(503), timeout=30, what="ws /readyz to answer 503 without redis")
        wait_until(lambda: web_readiness_is(503), timeout=15, what="web /readyz to answer 503 without redis")
        # Liveness makes no external calls.
        status, line = compose_stack.probe("ws", "http://127.0.0.1:8001/healthz")
        assert status == 200, line
        with http_client(compose_stack) as client:
            assert client.get("/healthz").status_code == 200

    await asyncio.to_thread(compose_stack.run, "stop", "redis")
    try:
        await asyncio.to_thread(during_outage)
    finally:
        await asyncio.to_thread(compose_stack.run, "start", "redis")
    await asyncio.to_thread(
        wait_until, lambda: ws_readiness_is(200), timeout=60, what="ws /readyz to recover after redis started"
    )
    await asyncio.to_thread(
        wait_until, lambda: web_readiness_is(200), timeout=30, what="web /readyz to recover after redis started"
    )
    # Clients get in again (after retries: see connect_welcomed).
    socket, welcome = await connect_welcomed(compose_stack, logged_in.cookie_header)
    await socket.close()
    assert welcome["user"] == logged_in.user


async def test_stopping_ws_drains_within_the_grace_period(compose_stack: ComposeProject, logged_in: LoggedIn) -> None:
    (container,) = await asyncio.to_thread(compose_stack.containers, "ws")
    socket, _ = await connect_welcomed(compose_stack, logged_in.cookie_header)
    async with socket:
        started = time.monotonic()
        await asyncio.to_thread(compose_stack.run, "stop", "ws", timeout=WS_GRACE_SECONDS + 30)
        elapsed = time.monotonic() - started
        with pytest.raises(ConnectionClosed):
            await receive_json(socket, within=5)
    (stopped,) = await asyncio.to_thread(compose_stack.containers, "ws", all_states=True)
    assert stopped["Id"] == container["Id"]
    assert stopped["State"]["Status"] == "exited"
    assert stopped["State"]["ExitCode"] != 137, "Docker had to SIGKILL the ws service"
    assert not stopped["State"]["OOMKilled"]
    assert elapsed < WS_GRACE_SECONDS, f"stop took {elapsed:.1f}s"


async def test_broadcast_reaches_clients_on_every_replica(compose_stack: ComposeProject, logged_in: LoggedIn) -> None:
    await asyncio.to_thread(
        compose_stack.run, "up", "--detach", "--wait", "--no-deps", "--scale", "ws=2", "ws", timeout=120
    )
    replicas = await asyncio.to_thread(compose_stack.containers, "ws")
    assert len(replicas) == 2
    assert all(replica["State"]["Health"]["Status"] == "healthy" for replica in replicas)

    def replica_holding(connection_id: str) -> str | None:
        for replica in replicas:
            if connection_id in compose_stack.logs(replica["Id"]):
                return str(replica["Id"])
        return None

    # The proxy re-resolves "ws" at least every 10 s and rotates the addresses
    # it gets: connect until both replicas hold a connection; keep one open on each.
    clients: dict[str, ClientConnection] = {}
    spread: dict[str, int] = {}
    opened: list[ClientConnection] = []
    deadline = time.monotonic() + 60
    try:
        while len(clients) < 2:
            assert time.monotonic() < deadline, f"the proxy sent every connection to one replica: {spread}"
            socket, welcome = await connect_welcomed(compose_stack, logged_in.cookie_header)
            opened.append(socket)
            replica = await asyncio.to_thread(
                wait_until,
                lambda cid=welcome["connection_id"]: replica_holding(cid),
                timeout=10,
                interval=0.2,
                what="the connection's log line",
            )
            spread[replica] = spread.get(replica, 0) + 1
            clients.setdefault(replica, socket)

        marker = uuid.uuid4().hex
        payload = {"type": "notice", "text": marker}
        result = await asyncio.to_thread(
            compose_stack.exec, "web", "python", "-m", "django", "ws_push", json.dumps(payload)
        )
        assert "broadcast sent" in result.stdout
        for replica, socket in clients.items():
            message = await receive_json(socket)
            assert message == payload, f"replica {replica[:12]} got {message}"
    finally:
        for socket in opened:
            await socket.close()
