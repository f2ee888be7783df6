"""One publish to the fan-out topic, by each path a configuration offers.

* ``ws``: a ``publish`` frame over a WebSocket to each server process (raw and
  bare servers fan out locally);
* ``layer``: a server-side publish over the channel layer from the harness
  process (product: ``shared.messaging.store_message`` + ``deliver``, the path
  a WebSocket publish takes; stock: ``group_send`` on a stock channels-redis layer);
* ``http``: ``POST /api/topics/<topic>/messages`` to the web service, logged in
  through its real login form, CSRF header included.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any, Protocol

import httpx
from websockets.sync.client import ClientConnection, connect

from bench.accounts import Account
from bench.clients import ORIGIN

TOPIC = "room.bench"
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class Publisher(Protocol):
    def publish(self, tag: str, topic: str = TOPIC) -> None: ...

    def close(self) -> None: ...


class WsPublisher:
    """A publishing connection to each server process (local fan-out servers)."""

    def __init__(self, urls: Sequence[str], cookie: str) -> None:
        self.connections: list[ClientConnection] = []
        for url in urls:
            ws = connect(
                url, origin=ORIGIN, additional_headers={"Cookie": cookie}, compression=None, proxy=None, open_timeout=10
            )
            ws.recv(timeout=10)  # welcome
            self.connections.append(ws)

    def publish(self, tag: str, topic: str = TOPIC) -> None:
        frame = json.dumps({"type": "publish", "topic": topic, "text": tag})
        for ws in self.connections:
            ws.send(frame)

    def close(self) -> None:
        for ws in self.connections:
            ws.close()


class StockLayerPublisher:
    """``group_send`` on a channels-redis layer with its default configuration."""

    def __init__(self, redis_url: str) -> None:
        from channels_redis.core import RedisChannelLayer

        self.runner = asyncio.Runner()
        self.layer: Any = RedisChannelLayer(hosts=[redis_url])
        self.runner.run(self.layer.group_send("bench.warmup", {"type": "warmup"}))

    def publish(self, tag: str, topic: str = TOPIC) -> None:
        self.runner.run(self.layer.group_send(topic, {"type": "topic.message", "topic": topic, "text": tag}))

    def close(self) -> None:
        self.runner.close()


class ProductLayerPublisher:
    """The product's server-side publish: store the message as ``account``'s user, deliver over the layer."""

    def __init__(self, account: Account) -> None:
        from channels.layers import get_channel_layer
        from django.contrib.auth.models import User

        self.user = User.objects.get(pk=account.user_id)
        self.runner = asyncio.Runner()
        layer: Any = get_channel_layer()
        self.runner.run(layer.group_send("bench.warmup", {"type": "warmup"}))

    def publish(self, tag: str, topic: str = TOPIC) -> None:
        from shared.current_user import use_current_user
        from shared.messaging import deliver, store_message

        with use_current_user(self.user):
            payload = store_message(topic, tag)
        self.runner.run(deliver(payload))

    def close(self) -> None:
        self.runner.close()


class HttpPublisher:
    """The web service's publish API, as a logged-in browser calls it."""

    def __init__(self, web_url: str, username: str, password: str) -> None:
        self.client = httpx.Client(base_url=web_url, timeout=30, trust_env=False)
        page = self.client.get("/accounts/login/")
        match = CSRF_INPUT.search(page.text)
        if match is None:
            raise RuntimeError(f"login page has no CSRF token ({page.status_code})")
        response = self.client.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)},
            headers={"Referer": f"{web_url}/accounts/login/", "Origin": web_url},
        )
        if response.status_code != 302 or "sessionid" not in self.client.cookies:
            raise RuntimeError(f"login failed: {response.status_code} {response.text[:200]}")

    def publish(self, tag: str, topic: str = TOPIC) -> None:
        response = self.client.post(
            f"/api/topics/{topic}/messages",
            json={"text": tag},
            headers={"X-CSRFToken": self.client.cookies["csrftoken"]},
        )
        if response.status_code != 201:
            raise RuntimeError(f"HTTP publish failed: {response.status_code} {response.text[:200]}")

    def close(self) -> None:
        self.client.close()
