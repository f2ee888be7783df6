"""Session fixtures: real PostgreSQL and Redis, and the settings pointed at them.

pytest-django imports the settings before any fixture runs (with the test
values from pyproject's ``env``), so once the servers are up the fixtures
patch the database and Redis settings in place and export the same URLs for
the Daphne processes the integration tests start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dj_database_url
import pytest
from channels.layers import channel_layers
from django.conf import settings
from django.core.management import call_command
from pytest_django import DjangoDbBlocker

from shared.channel_layer import channel_layers_config
from tests.support.servers import DaphneServer, PostgresServer, RedisServer
from ws_service.launcher.options import SERVERS as WS_SERVERS


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.init()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


def point_channel_layer_at(redis_url: str) -> None:
    """Rebuild CHANNEL_LAYERS for ``redis_url`` and drop cached layer instances."""
    settings.REDIS_URL = redis_url
    settings.CHANNEL_LAYERS = channel_layers_config(
        redis_url,
        prefix=settings.CHANNEL_LAYER_PREFIX,
        capacity=settings.CHANNEL_LAYER_CAPACITY,
        expiry=settings.CHANNEL_LAYER_EXPIRY,
        pool=settings.REDIS_POOL,
    )
    channel_layers.backends = {}


@pytest.fixture(scope="session", autouse=True)
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Static files collected as the web image does, so WhiteNoise serves real files."""
    root = tmp_path_factory.mktemp("static")
    settings.STATIC_ROOT = root
    call_command("collectstatic", interactive=False, verbosity=0)
    os.environ["DJANGO_STATIC_ROOT"] = str(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def asgi_applications_loaded(static_root: Path) -> None:
    """Import both ASGI entry points once, up front.

    ``get_asgi_application()`` calls ``django.setup()``, which re-applies
    LOGGING and so removes pytest's log-capture handler. Done here, it never
    happens in the middle of a test.
    """
    import web_service.asgi  # noqa: F401
    import ws_service.asgi  # noqa: F401


@pytest.fixture(scope="session")
def service_env(postgres_server: PostgresServer, redis_server: RedisServer) -> dict[str, str]:
    """Settings patched for the test servers; the environment for service processes."""
    parsed = dj_database_url.parse(postgres_server.url)
    default = settings.DATABASES["default"]
    for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT"):
        default[key] = parsed[key]
    point_channel_layer_at(redis_server.url)
    env = dict(os.environ, DATABASE_URL=postgres_server.url, REDIS_URL=redis_server.url)
    env["DJANGO_SETTINGS_MODULE"] = "shared.settings"
    os.environ["DATABASE_URL"] = postgres_server.url
    os.environ["REDIS_URL"] = redis_server.url
    return env


@pytest.fixture(scope="session")
def django_db_setup(service_env: dict[str, str], django_db_blocker: DjangoDbBlocker) -> None:
    """Migrate the throwaway cluster's database itself (no test_ copy needed)."""
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Iterator[None]:
    """channels-redis pools belong to one event loop; each test gets its own loop."""
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session", params=WS_SERVERS)
def ws_server_kind(request: pytest.FixtureRequest) -> str:
    """Each ASGI server the ws image can run (``WS_SERVER``): the contract tests run on both."""
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def ws_server(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[DaphneServer]:
    """The ws service through its launcher, on each supported server."""
    server = DaphneServer.ws({**service_env, "WS_SERVER": ws_server_kind}, logs_dir / f"ws-{ws_server_kind}.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def web_server(service_env: dict[str, str], django_db_setup: None, logs_dir: Path) -> Iterator[DaphneServer]:
    """The web service under a real Daphne."""
    server = DaphneServer.web(service_env, logs_dir / "web.log")
    server.start()
    yield server
    server.stop()


# Under pytest-xdist (scripts/test runs 4 workers, one module per worker at a
# time) the modules are handed out in collection order: the longest ones go
# first, so that no worker starts a five-minute module near the end.
LONGEST_FIRST = (
    "tests/compose/test_compose_e2e.py",
    "tests/integration/test_churn.py",
    "tests/bench/",
    "tests/clients/test_js_client.py",
    "tests/browser/",
    "tests/integration/test_load_and_idle.py",
    "tests/integration/test_faults.py",
    "tests/integration/test_inbound_flood.py",
    "tests/integration/test_slow_readers.py",
    "tests/test_code_quality.py",
    "tests/compose/",
    "tests/integration/",
    "tests/clients/",
    "tests/web_service/test_login_throttling.py",
)


def _start_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    for rank, prefix in enumerate(LONGEST_FIRST):
        if path.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


def pytest_configure(config: pytest.Config) -> None:
    """Daphne's asyncio reactor first, as the ws launcher does (``daphne.server`` installs it).

    Django no longer imports Daphne (it is not an installed app), so a test
    module importing ``twisted.internet.reactor`` before any Daphne test would
    install Twisted's default reactor, and Daphne's tests would then fail on
    Daphne's "non-asyncio reactor" warning.
    """
    import daphne.server  # noqa: F401

    del config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_start_rank)  # stable: the order within a module is kept
