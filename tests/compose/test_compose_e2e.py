"""The whole stack in real containers, driven through the published proxy port only.

One compose project for the module (tests.compose.conftest.compose_stack);
the tests run in file order and share it: the ones that stop services come
late, the scaling test leaves three ws replicas, and the tests that exhaust
the proxy's per-address limits come next (every test client shares one
address at the proxy). The last ones bring up a second project beside it
(tests.compose.conftest.dev_project: a copy of the repository under
compose.dev.yaml, another HTTP_PORT): both serve side by side, an edit of the
copy's code is live there within seconds, and each project's ``down`` leaves
the other running. Every wait is bounded. Traffic goes to 127.0.0.1 (the
proxy) or, through ``docker compose exec``, to the project's own containers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

from tests.compose.support import (
    DOWN_TIMEOUT,
    UP_TIMEOUT,
    WS_CONNECTIONS_PER_IP,
    ComposeProject,
    Superuser,
    requires_engine,
    wait_until,
)

pytestmark = requires_engine()

CLOSE_UNAUTHENTICATED = 4401
WS_GRACE_SECONDS = 20.0
RECEIVE_TIMEOUT = 10.0
# Sockets that connect to the proxy and never complete a request: more than
# the nginx image's default capacity (768 or 1024 per worker) could hold.
HALF_OPEN_SOCKETS = 2500
# What each of them sends: the start of a request line, never finished. (A
# socket that sends nothing at all is "reusable" to nginx, which closes the
# oldest such ones when it runs out of connections; a started request is not.)
PARTIAL_REQUEST = "GET / HTTP/1.1\r\nHost: pro"
# ws replicas of the scaling test.
REPLICAS = 3
# From `docker compose restart ws` returning to a client's welcome.
RESTART_RECOVERY_SECONDS = 8.0
# From saving an edit to the new behaviour through the proxy (development
# loop): the reloader polls every 0.5 s, then the server process starts again
# (2-3 s on an idle machine; 19 s were measured on a 2-core one at load 26).
DEV_RELOAD_SECONDS = 30.0
# The texts the development-loop test edits in the copy (web_service/api.py, ws_service/kernel.py).
NOT_LOGGED_IN_DETAIL = "Log in first."
UNAUTHENTICATED_REASON = "authentication required"
# proxy/nginx.conf's client_header_timeout, and what is allowed on top of it.
HEADER_TIMEOUT_SECONDS = 5.0
HEADER_TIMEOUT_SLACK = 5.0


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


# Run inside a container on the edge network (the web service's): opens the
# sockets to proxy:80 directly, not through Docker's port forwarding (which
# itself stops forwarding at ~1,400 concurrent connections here), holds them,
# and reports how many the proxy still held open at the end.
FLOOD = """
import socket, sys, time
count, hold, partial = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].encode()
held, failed = [], 0
for _ in range(count):
    try:
        sock = socket.create_connection(("proxy", 80), timeout=3)
        sock.sendall(partial)
        held.append(sock)
    except OSError:
        failed += 1
print("opened", len(held), "failed", failed, flush=True)
time.sleep(hold)
alive = 0
for sock in held:
    sock.setblocking(False)
    try:
        alive += sock.recv(1) != b""
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print("alive", alive, flush=True)
"""


@asynccontextmanager
async def flood_from_the_edge(stack: ComposeProject, count: int, hold: float) -> AsyncIterator[list[str]]:
    """``count`` connections that never complete a request, held ``hold`` seconds; yields once all are open.

    The list yielded gets the flood's report lines (opened/failed, alive) when the block ends.
    """
    command = stack.command("exec", "-T", "web", "python", "-c", FLOOD, str(count), str(hold), PARTIAL_REQUEST)
    process = await asyncio.create_subprocess_exec(
        *command, env=stack.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    report: list[str] = []
    try:
        async with asyncio.timeout(60):
            report.append((await process.stdout.readline()).decode().strip())
        assert report[0].startswith("opened"), report
        yield report
        async with asyncio.timeout(hold + 60):
            rest, errors = await process.communicate()
        report.extend(rest.decode().split())
        assert process.returncode == 0, errors.decode()[-2000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def raw_get(stack: ComposeProject, path: str) -> tuple[int, str]:
    """``GET path`` sent byte for byte (HTTP clients normalise paths like ``//readyz``): status and body."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{stack.http_port}\r\nConnection: close\r\n\r\n"
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=10) as sock:
        sock.sendall(request.encode())
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if sum(map(len, chunks)) > 1_000_000:
                break
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode(errors="replace")


def reachable(stack: ComposeProject, service: str, host: str, port: int) -> bool:
    """Whether ``service``'s container can open a TCP connection to host:port (bash /dev/tcp, 3 s)."""
    result = stack.exec(service, "timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}", check=False)
    return result.returncode == 0


def proxy_logs(stack: ComposeProject) -> str:
    """Everything the proxy container logged: access log (stdout) and error log (stderr)."""
    (proxy,) = stack.containers("proxy")
    return stack.logs(proxy["Id"])


# /proc/PID/limits of one nginx worker (no pgrep in the image).
WORKER_LIMITS = (
    "for d in /proc/[0-9]*; do "
    "if tr '\\0' ' ' < $d/cmdline 2>/dev/null | grep -q 'worker process'; then cat $d/limits; exit 0; fi; "
    "done; exit 1"
)


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


def test_health_endpoints_are_not_served_through_the_proxy(compose_stack: ComposeProject) -> None:
    """Probes are for the orchestrator, which calls the containers directly (next test)."""
    for path in ("/healthz", "/readyz", "/readyz?verbose=1", "//readyz", "/health%7A", "/./readyz", "/proxy-health"):
        status, body = raw_get(compose_stack, path)
        expected = 200 if path == "/proxy-health" else 404
        assert status == expected, (path, status, body[:200])
        assert "database" not in body, path


@pytest.mark.parametrize(("service", "port"), [("web", 8000), ("ws", 8001)])
def test_health_endpoints_inside_the_containers(compose_stack: ComposeProject, service: str, port: int) -> None:
    for path in ("/healthz", "/readyz"):
        status, line = compose_stack.probe(service, f"http://127.0.0.1:{port}{path}")
        assert status == 200, line
    # Metrics listen inside the container only (METRICS_BIND=127.0.0.1).
    status, line = compose_stack.probe(service, "http://127.0.0.1:9100/metrics")
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


def test_every_container_runs_with_memory_process_and_file_limits(compose_stack: ComposeProject) -> None:
    for service in ("db", "redis", "web", "ws", "prune", "proxy"):
        (container,) = compose_stack.containers(service)
        host = container["HostConfig"]
        assert host["Memory"] > 0, service
        assert (host["PidsLimit"] or 0) > 0, service
    (proxy,) = compose_stack.containers("proxy")
    nofile = {limit["Name"]: limit["Hard"] for limit in proxy["HostConfig"]["Ulimits"]}["nofile"]
    assert nofile >= 16384
    # The workers really got them: nginx's own worker_rlimit_nofile could not exceed the container's.
    limits = compose_stack.exec("proxy", "bash", "-c", WORKER_LIMITS)
    assert re.search(r"Max open files\s+16384\s+16384", limits.stdout), limits.stdout


def test_the_proxy_reaches_only_web_and_ws(compose_stack: ComposeProject) -> None:
    """Separate networks: nothing in the proxy (or anyone who took it over) can talk to db, redis or metrics."""
    assert reachable(compose_stack, "proxy", "web", 8000)
    assert reachable(compose_stack, "proxy", "ws", 8001)
    for host, port in (("db", 5432), ("redis", 6379), ("ws", 9100), ("web", 9100)):
        assert not reachable(compose_stack, "proxy", host, port), f"the proxy reaches {host}:{port}"
    # Not by address either: the backend network has no route from the edge.
    for service, port in (("db", 5432), ("redis", 6379)):
        (container,) = compose_stack.containers(service)
        (network,) = container["NetworkSettings"]["Networks"].values()
        address = network["IPAddress"]
        assert reachable(compose_stack, "web", address, port), f"web should reach {service} at {address}"
        assert not reachable(compose_stack, "proxy", address, port), f"the proxy reaches {service} at {address}"


async def test_half_open_sockets_do_not_lock_out_other_clients(
    compose_stack: ComposeProject, logged_in: LoggedIn
) -> None:
    """F2: thousands of connections that never complete a request; real clients still get in at once."""

    async def one_client() -> dict[str, Any]:
        async with open_socket(compose_stack, cookie=logged_in.cookie_header) as socket_:
            return await receive_json(socket_)

    hold = HEADER_TIMEOUT_SECONDS - 1.5
    async with flood_from_the_edge(compose_stack, HALF_OPEN_SOCKETS, hold) as report:
        started = time.monotonic()
        welcomes = await asyncio.gather(*(one_client() for _ in range(10)))
        async with httpx.AsyncClient(base_url=compose_stack.base_url, timeout=15.0, trust_env=False) as client:
            page = await client.get("/accounts/login/")
        elapsed = time.monotonic() - started
    assert [welcome["type"] for welcome in welcomes] == ["welcome"] * 10
    assert page.status_code == 200
    assert elapsed < hold, f"clients needed {elapsed:.1f}s"
    # All of them were open, and still held by the proxy after the clients came in.
    assert report[0] == f"opened {HALF_OPEN_SOCKETS} failed 0", report
    assert report[1:] == ["alive", str(HALF_OPEN_SOCKETS)], report


def test_a_silent_connection_is_closed_after_the_header_timeout(compose_stack: ComposeProject) -> None:
    with socket.create_connection(("127.0.0.1", compose_stack.http_port), timeout=5) as sock:
        sock.settimeout(HEADER_TIMEOUT_SECONDS + HEADER_TIMEOUT_SLACK)
        started = time.monotonic()
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - started
    # Closed without a response (reset_timedout_connection), within the timeout plus slack.
    assert data == b""
    assert HEADER_TIMEOUT_SECONDS - 1 <= elapsed <= HEADER_TIMEOUT_SECONDS + HEADER_TIMEOUT_SLACK


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

    # Both handshakes are in the proxy's access log, the ticket is not.
    logs = await asyncio.to_thread(proxy_logs, compose_stack)
    assert len(re.findall(r'"GET /ws/ HTTP/1\.1" 101 ', logs)) >= 2, logs[-2000:]
    assert ticket not in logs
    assert "ticket=" not in logs


async def test_readiness_follows_redis(compose_stack: ComposeProject, logged_in: LoggedIn) -> None:
    def ws_readiness_is(expected: int) -> bool | None:
        status, _ = compose_stack.probe("ws", "http://127.0.0.1:8001/readyz")
        return True if status == expected else None

    def web_readiness_is(expected: int) -> bool | None:
        status, _ = compose_stack.probe("web", "http://127.0.0.1:8000/readyz")
        return True if status == expected else None

    def during_outage() -> None:
        wait_until(lambda: ws_readiness_is(503), timeout=30, what="ws /readyz to answer 503 without redis")
        wait_until(lambda: web_readiness_is(503), timeout=15, what="web /readyz to answer 503 without redis")
        # Liveness makes no external calls.
        for service, port in (("ws", 8001), ("web", 8000)):
            status, line = compose_stack.probe(service, f"http://127.0.0.1:{port}/healthz")
            assert status == 200, line

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


async def test_a_failed_ticket_handshake_leaves_no_ticket_in_the_proxy_logs(compose_stack: ComposeProject) -> None:
    """With ws stopped (previous test) the proxy fails the upstream: nginx would quote the URL in its error log."""
    marker = f"secret-{uuid.uuid4().hex}"
    with pytest.raises(InvalidStatus) as refused:
        async with open_socket(compose_stack, query=f"?ticket={marker}"):
            pass
    assert refused.value.response.status_code in (502, 503, 504)
    logs = await asyncio.to_thread(proxy_logs, compose_stack)
    # The failed handshake is logged (status and path), its query string is not.
    assert re.search(r'"GET /ws/ HTTP/1\.1" 50[234] ', logs), logs[-2000:]
    assert marker not in logs
    assert "ticket=" not in logs


async def test_connections_spread_over_every_replica_and_broadcasts_reach_them_all(
    compose_stack: ComposeProject, logged_in: LoggedIn
) -> None:
    """least_conn over every replica the proxy resolves: 9 simultaneous connects, 3 replicas, none left empty."""
    await asyncio.to_thread(
        compose_stack.run, "up", "--detach", "--wait", "--no-deps", "--scale", f"ws={REPLICAS}", "ws", timeout=120
    )
    replicas = await asyncio.to_thread(compose_stack.containers, "ws")
    assert len(replicas) == REPLICAS
    assert all(replica["State"]["Health"]["Status"] == "healthy" for replica in replicas)
    # The proxy asks Docker's DNS again every 2 s (resolver valid=2s).
    await asyncio.sleep(3)

    def replica_holding(connection_id: str) -> str | None:
        for replica in replicas:
            if connection_id in compose_stack.logs(replica["Id"]):
                return str(replica["Id"])
        return None

    connected = await asyncio.gather(
        *(connect_welcomed(compose_stack, logged_in.cookie_header) for _ in range(3 * REPLICAS))
    )
    opened = [socket for socket, _ in connected]
    try:
        clients: dict[str, ClientConnection] = {}
        spread: dict[str, int] = {}
        for socket, welcome in connected:
            replica = await asyncio.to_thread(
                wait_until,
                lambda cid=welcome["connection_id"]: replica_holding(cid),
                timeout=10,
                interval=0.2,
                what="the connection's log line",
            )
            spread[replica[:12]] = spread.get(replica[:12], 0) + 1
            clients.setdefault(replica, socket)
        assert len(spread) == REPLICAS, f"connections per replica: {spread}"
        assert min(spread.values()) >= 2, f"connections per replica: {spread}"

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


async def test_clients_get_back_quickly_after_the_ws_replicas_restart(
    compose_stack: ComposeProject, logged_in: LoggedIn
) -> None:
    """The proxy finds restarted replicas at once (re-resolved every 2 s, refused handshakes retried elsewhere)."""
    await asyncio.to_thread(compose_stack.run, "restart", "ws", timeout=120)
    restarted = time.monotonic()
    socket, welcome = await connect_welcomed(compose_stack, logged_in.cookie_header, within=30)
    elapsed = time.monotonic() - restarted
    await socket.close()
    assert welcome["type"] == "welcome"
    # Before: 17-22 s and about five 502s (one address cached for the DNS window).
    assert elapsed < RESTART_RECOVERY_SECONDS, f"back after {elapsed:.1f}s"


# The tests below exhaust the proxy's per-address budgets, which every test
# client shares (one address at the proxy): they come last.


async def test_open_websockets_per_address_are_limited(compose_stack: ComposeProject, logged_in: LoggedIn) -> None:
    await asyncio.sleep(3)  # the handshake bucket refills (10/s) after the previous test
    opened: list[ClientConnection] = []
    try:
        for _ in range(WS_CONNECTIONS_PER_IP):
            socket, _ = await connect_welcomed(compose_stack, logged_in.cookie_header, within=10)
            opened.append(socket)
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(compose_stack, cookie=logged_in.cookie_header):
                pass
        assert refused.value.response.status_code == 429
    finally:
        for socket in opened:
            await socket.close()
    # Each closed socket frees its place again.
    socket, welcome = await connect_welcomed(compose_stack, logged_in.cookie_header, within=10)
    await socket.close()
    assert welcome["type"] == "welcome"


async def test_websocket_handshakes_per_address_are_rate_limited(compose_stack: ComposeProject) -> None:
    async def handshake() -> int:
        try:
            async with open_socket(compose_stack) as socket:
                with pytest.raises(ConnectionClosed):
                    await receive_json(socket)  # no credentials: 4401 once through
        except InvalidStatus as exc:
            return exc.response.status_code
        return 101

    statuses = await asyncio.gather(*(handshake() for _ in range(60)))
    assert set(statuses) == {101, 429}, statuses
    # The burst (20) and what refilled meanwhile passed; the rest was refused.
    assert statuses.count(429) >= 20, statuses


def test_login_attempts_per_address_are_rate_limited(compose_stack: ComposeProject) -> None:
    with http_client(compose_stack) as client:
        statuses = [
            client.post("/accounts/login/", data={"username": "x", "password": "y"}).status_code for _ in range(15)
        ]
        page = client.get("/accounts/login/")
    # CSRF refuses the first ones (403); past the burst of 10 the proxy answers 429 before Django sees them.
    assert 429 in statuses, statuses
    assert statuses.count(429) >= 4, statuses
    # Viewing the form is no password attempt.
    assert page.status_code == 200


# A second project beside the first (the development loop's): they come last.


async def unauthenticated_close(stack: ComposeProject) -> tuple[int, str]:
    """Code and reason of the close a WebSocket without credentials gets through the proxy."""
    async with open_socket(stack) as socket_:
        with pytest.raises(ConnectionClosed) as closed:
            await receive_json(socket_)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def not_logged_in_detail(stack: ComposeProject) -> str:
    """The web service's answer to an anonymous ``GET /api/whoami`` (401): its ``detail``."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15.0, trust_env=False) as client:
        response = await client.get("/api/whoami")
    assert response.status_code == 401, response.text[:300]
    detail: str = response.json()["detail"]
    return detail


async def serves_demo_and_ws(stack: ComposeProject) -> None:
    """The demo page (via the login page) and /ws/ answer through the project's own published port."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15.0, trust_env=False) as client:
        home = await client.get("/")
        login = await client.get("/accounts/login/")
    assert home.status_code == 302, home.text[:300]
    assert home.headers["location"].startswith("/accounts/login/")
    assert login.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in login.text
    code, _ = await unauthenticated_close(stack)
    assert code == CLOSE_UNAUTHENTICATED


def running_services(stack: ComposeProject) -> set[str]:
    """Services with a running container in the project."""
    return set(stack.run("ps", "--services", "--status", "running").stdout.split())


async def test_a_second_project_runs_alongside_with_images_and_networks_of_its_own(
    compose_stack: ComposeProject, dev_project: ComposeProject
) -> None:
    await asyncio.sleep(3)  # the handshake bucket refills after the rate-limit tests
    for project in (compose_stack, dev_project):
        await serves_demo_and_ws(project)
    subnets: list[str] = []
    for project in (compose_stack, dev_project):
        for service in ("web", "ws"):
            container = (await asyncio.to_thread(project.containers, service))[0]
            # Named after the project by Compose: nothing re-tags the other project's image.
            assert container["Config"]["Image"] == f"{project.name}-{service}"
        (proxy,) = await asyncio.to_thread(project.containers, "proxy")
        (edge,) = proxy["NetworkSettings"]["Networks"].values()
        subnets.append(f"{edge['IPAddress']}/{edge['IPPrefixLen']}")
        # FORWARDED_ALLOW_IPS=proxy: web and ws found the proxy's address by its name.
        for service in ("web", "ws"):
            container = (await asyncio.to_thread(project.containers, service))[0]
            logs = await asyncio.to_thread(project.logs, container["Id"])
            assert f"trusted proxy addresses: proxy -> {edge['IPAddress']}" in logs, service
    # Docker picked a different edge subnet for each (web and ws trust the proxy by name).
    first, second = (ipaddress.ip_interface(subnet).network for subnet in subnets)
    assert not first.overlaps(second), subnets


async def test_an_edit_is_live_in_both_services_without_a_rebuild(
    compose_stack: ComposeProject, dev_project: ComposeProject
) -> None:
    """compose.dev.yaml: edit the copy's web and ws code, see both changes through its proxy."""
    assert await not_logged_in_detail(dev_project) == NOT_LOGGED_IN_DETAIL
    assert await unauthenticated_close(dev_project) == (CLOSE_UNAUTHENTICATED, UNAUTHENTICATED_REASON)
    web_text, ws_text = f"web edit {uuid.uuid4().hex[:8]}", f"ws edit {uuid.uuid4().hex[:8]}"
    code = dev_project.directory
    edits = (
        (code / "web_service" / "api.py", f'"{NOT_LOGGED_IN_DETAIL}"', f'"{web_text}"'),
        (code / "ws_service" / "kernel.py", f'reason="{UNAUTHENTICATED_REASON}"', f'reason="{ws_text}"'),
    )
    for path, old, new in edits:
        source = path.read_text()
        assert source.count(old) == 1, f"{path.name} no longer has {old}"
        path.write_text(source.replace(old, new))
    saved = time.monotonic()

    seen: dict[str, float] = {}
    last: list[str] = []
    while len(seen) < 2:
        assert time.monotonic() - saved < DEV_RELOAD_SECONDS, f"not live within {DEV_RELOAD_SECONDS:g}s: {last}"
        try:
            if "web" not in seen and await not_logged_in_detail(dev_project) == web_text:
                seen["web"] = time.monotonic() - saved
            if "ws" not in seen and (await unauthenticated_close(dev_project))[1] == ws_text:
                seen["ws"] = time.monotonic() - saved
        except (AssertionError, httpx.HTTPError, InvalidHandshake, OSError, TimeoutError) as exc:
            last = [repr(exc)[:200]]  # a service restarting: the proxy answers 502 meanwhile
        await asyncio.sleep(0.25)
    print(f"development loop: live after web {seen['web']:.1f}s, ws {seen['ws']:.1f}s")
    # The first project runs its own code, untouched.
    assert await not_logged_in_detail(compose_stack) == NOT_LOGGED_IN_DETAIL
    assert await unauthenticated_close(compose_stack) == (CLOSE_UNAUTHENTICATED, UNAUTHENTICATED_REASON)


async def test_each_projects_down_leaves_the_other_running(
    compose_stack: ComposeProject, dev_project: ComposeProject
) -> None:
    await asyncio.to_thread(dev_project.run, "down", "--timeout", "10", timeout=DOWN_TIMEOUT)
    assert await asyncio.to_thread(running_services, dev_project) == set()
    assert {"web", "ws", "proxy", "db", "redis"} <= await asyncio.to_thread(running_services, compose_stack)
    await serves_demo_and_ws(compose_stack)

    # The other way round, kept short: the second project's db and redis again, then the
    # first project down; they keep running, healthy, on their own network.
    await asyncio.to_thread(dev_project.run, "up", "--detach", "--wait", "--no-deps", "db", "redis", timeout=UP_TIMEOUT)
    await asyncio.to_thread(compose_stack.run, "down", "--timeout", "10", timeout=DOWN_TIMEOUT)
    assert await asyncio.to_thread(running_services, compose_stack) == set()
    assert await asyncio.to_thread(running_services, dev_project) == {"db", "redis"}
    for service in ("db", "redis"):
        (container,) = await asyncio.to_thread(dev_project.containers, service)
        assert container["State"]["Health"]["Status"] == "healthy", service
