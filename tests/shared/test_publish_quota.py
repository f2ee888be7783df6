"""The per-user publish quota, over HTTP and over WebSocket (live, both servers), across replicas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.test import Client, override_settings

from shared.models import Message
from shared.quota import quota_key
from tests.support.live import open_ws, recv_json
from tests.support.servers import DaphneServer, free_port
from tests.support.users import make_user, session_key_for

pytestmark = pytest.mark.django_db(transaction=True)

MAX_MESSAGES = 3
MAX_BYTES = 2048
WINDOW = 30
QUOTA_ENV = {
    "PUBLISH_QUOTA_MESSAGES": str(MAX_MESSAGES),
    "PUBLISH_QUOTA_BYTES": str(MAX_BYTES),
    "PUBLISH_QUOTA_WINDOW_SECONDS": str(WINDOW),
}
quota_settings = override_settings(
    PUBLISH_QUOTA_MESSAGES=MAX_MESSAGES, PUBLISH_QUOTA_BYTES=MAX_BYTES, PUBLISH_QUOTA_WINDOW_SECONDS=WINDOW
)


def _publish(client: Client, topic: str, text: str) -> Any:
    return client.post(
        f"/api/topics/{topic}/messages", data=json.dumps({"text": text}), content_type="application/json"
    )


def _stored(topic: str) -> list[str]:
    return list(Message.objects.filter(topic=topic).order_by("seq").values_list("text", flat=True))


@quota_settings
def test_http_publish_over_the_message_quota_is_429_and_not_stored(redis_server: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    client = Client()
    client.force_login(alice)
    for i in range(MAX_MESSAGES):
        assert _publish(client, "room.q", f"m{i}").status_code == 201
    refused = _publish(client, "room.q", "one too many")
    assert refused.status_code == 429, refused.content
    assert refused.json()["error"] == "quota_exceeded"
    assert str(MAX_MESSAGES) in refused.json()["detail"]
    assert 1 <= int(refused["Retry-After"]) <= WINDOW
    assert _stored("room.q") == [f"m{i}" for i in range(MAX_MESSAGES)]
    other = Client()
    other.force_login(bob)
    assert _publish(other, "room.q", "bob has his own quota").status_code == 201
    # One key per user, expiring with the window.
    data = redis.Redis.from_url(redis_server.url)
    try:
        assert 0 < data.pttl(quota_key(alice.pk)) <= WINDOW * 1000
        assert data.hgetall(quota_key(alice.pk)) == {b"n": str(MAX_MESSAGES).encode(), b"b": b"6"}
    finally:
        data.close()


@quota_settings
def test_http_publish_over_the_byte_quota_is_429() -> None:
    client = Client()
    client.force_login(make_user("carol"))
    big = "€" * (MAX_BYTES // 3 - 10)  # 3 bytes each in UTF-8: just under the byte quota
    assert _publish(client, "room.b", big).status_code == 201
    refused = _publish(client, "room.b", "€" * 20)  # 60 more bytes: over it, though only 2 messages
    assert refused.status_code == 429
    assert refused.json()["error"] == "quota_exceeded"
    assert _publish(client, "room.b", "ok").status_code == 201  # what still fits is accepted
    assert _stored("room.b") == [big, "ok"]


@pytest.fixture(scope="module")
def quota_ws_servers(
    service_env: dict[str, str], django_db_setup: None, logs_dir: Path, ws_server_kind: str
) -> Iterator[list[DaphneServer]]:
    """Two ws replicas with a small quota: the quota is per user across both."""
    with DaphneServer.running_replicas(
        service_env, logs_dir, f"ws-quota-{ws_server_kind}", 2, WS_SERVER=ws_server_kind, **QUOTA_ENV
    ) as servers:
        yield servers


async def test_ws_publish_over_the_quota_gets_quota_exceeded_across_replicas(
    quota_ws_servers: list[DaphneServer],
) -> None:
    user = await sync_to_async(make_user)("ws-quota")
    cookie = f"sessionid={await sync_to_async(session_key_for)(user)}"
    sockets = [await open_ws(server.ws_url, cookie=cookie) for server in quota_ws_servers]
    try:
        for ws in sockets:
            assert (await recv_json(ws))["type"] == "welcome"
        for i in range(MAX_MESSAGES):  # spread over both replicas
            ws = sockets[i % 2]
            await ws.send(json.dumps({"type": "publish", "topic": "room.wsq", "text": f"m{i}", "ref": f"r{i}"}))
            assert (await recv_json(ws))["type"] == "ack"
        for ws in sockets:
            await ws.send(json.dumps({"type": "publish", "topic": "room.wsq", "text": "over", "ref": "over"}))
            error = await recv_json(ws)
            assert (error["type"], error["code"], error["ref"]) == ("error", "quota_exceeded", "over")
            await ws.send(json.dumps({"type": "ping"}))
            assert (await recv_json(ws))["type"] == "pong"  # the connection stays open
    finally:
        for ws in sockets:
            await ws.close()
    assert await sync_to_async(_stored)("room.wsq") == [f"m{i}" for i in range(MAX_MESSAGES)]


@quota_settings
def test_an_unreachable_quota_store_lets_http_publishes_through(caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    client.force_login(make_user("dave"))
    # REDIS_URL is the quota's store; the channel layer (delivery) keeps its own configuration.
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        statuses = [_publish(client, "room.open", f"m{i}").status_code for i in range(MAX_MESSAGES + 1)]
    assert statuses == [201] * (MAX_MESSAGES + 1)  # a Redis outage is not a publish outage
    assert "publish quota not checked" in caplog.text
    assert len(_stored("room.open")) == MAX_MESSAGES + 1
