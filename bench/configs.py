"""The configurations measured, and how each one is started (one process, or two on one socket)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.infra import PYTHON

Kind = Literal["raw", "bare", "stock", "product"]
PublishPath = Literal["ws", "layer", "http"]

# The same server timeouts everywhere (the product's launcher defaults), so only the code differs.
DAPHNE_OPTIONS = ["-v", "0", "--websocket_connect_timeout", "30", "--ping-interval", "20", "--ping-timeout", "30"]
UVICORN_OPTIONS = [
    "--ws", "websockets-sansio", "--loop", "uvloop", "--http", "h11", "--lifespan", "off", "--no-access-log",
    "--ws-per-message-deflate", "false", "--ws-ping-interval", "20", "--ws-ping-timeout", "30",
    "--log-level", "warning",
]  # fmt: skip
BARE_APP = "bench.servers.bare_asgi:application"
STOCK_APP = "bench.servers.stock_asgi:application"


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    label: str
    kind: Kind
    server: Literal["websockets", "daphne", "uvicorn"]
    publish_paths: tuple[PublishPath, ...]

    def _worker_command(self, where: list[str]) -> list[str]:
        """The server command listening on ``where`` (``--port {port}`` style or ``--fd {fd}``)."""
        if self.kind == "raw":
            return [PYTHON, "-m", "bench.servers.raw", *where]
        app = STOCK_APP if self.kind == "stock" else BARE_APP
        if self.server == "uvicorn":
            return [PYTHON, "-m", "uvicorn", *where, *UVICORN_OPTIONS, app]
        daphne_where = ["--fd", where[1]] if where[0] == "--fd" else ["-b", "127.0.0.1", "-p", where[1]]
        return [PYTHON, "-m", "daphne", *daphne_where, *DAPHNE_OPTIONS, app]

    def command(self, workers: int) -> tuple[list[str], dict[str, str]]:
        """Command (``{port}`` placeholder) and extra environment for ``workers`` processes on one port."""
        extra: dict[str, str] = {}
        if self.kind == "stock":
            extra["DJANGO_SETTINGS_MODULE"] = "bench.servers.stock_settings"
        if self.kind == "product":
            extra |= {"WS_SERVER": self.server, "WS_WORKERS": str(workers), "WS_BIND": "127.0.0.1", "WS_PORT": "{port}"}
            # Its /metrics on a port of its own: the idle scenario reads the full garbage collections from it.
            extra["METRICS_PORT"] = "{metrics_port}"
            return [PYTHON, "-m", "ws_service"], extra
        if workers == 1:
            where = ["--port", "{port}"] if self.server != "uvicorn" else ["--host", "127.0.0.1", "--port", "{port}"]
            return self._worker_command(where), extra
        multi = [PYTHON, "-m", "bench.servers.multi", "--workers", str(workers), "--port", "{port}", "--"]
        return [*multi, *self._worker_command(["--fd", "{{fd}}"])], extra


CONFIGS: tuple[Config, ...] = (
    Config("raw", "raw websockets (uvloop), no framework", "raw", "websockets", ("ws",)),
    Config("daphne-bare", "Daphne + bare ASGI echo", "bare", "daphne", ("ws",)),
    Config("uvicorn-bare", "Uvicorn (websockets-sansio, uvloop) + bare ASGI echo", "bare", "uvicorn", ("ws",)),
    Config("stock", "stock: Daphne + AuthMiddlewareStack + AsyncWebsocketConsumer + RedisChannelLayer", "stock",
           "daphne", ("layer",)),
    Config("product-daphne", "product: python -m ws_service, WS_SERVER=daphne", "product", "daphne", ("layer", "http")),
    Config("product-uvicorn", "product: python -m ws_service, WS_SERVER=uvicorn", "product", "uvicorn",
           ("layer", "http")),
)  # fmt: skip
BY_NAME = {config.name: config for config in CONFIGS}
