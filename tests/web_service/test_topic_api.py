"""HTTP publish and staff notifications, delivered to WebSocket clients."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from shared.current_user import use_current_user
from shared.messaging import store_message
from shared.models import Message
from tests.support.communicators import receive_message, send_message, ws_communicator
from tests.support.users import client_for, make_user, post_json, session_key_for

pytestmark = pytest.mark.django_db(transaction=True)


async def test_http_publish_is_stored_and_delivered_like_a_websocket_publish() -> None:
    alice = await sync_to_async(make_user)("alice")
    key = await sync_to_async(session_key_for)(alice)
    listener = ws_communicator(session_key=key)
    await listener.connect()
    await receive_message(listener)
    await send_message(listener, {"type": "subscribe", "topic": "room.http"})
    assert (await receive_message(listener))["type"] == "subscribed"

    response = await sync_to_async(
        lambda: post_json(client_for(alice), "/api/topics/room.http/messages", {"text": "over http"})
    )()
    assert response.status_code == 201
    assert response.json()["id"] == 1
    message = await receive_message(listener)
    for _ in range(10):  # a feature's own pushes (e.g. who joined) may come first
        if message["type"] == "message":
            break
        message = await receive_message(listener)
    assert message["type"] == "message"
    assert message["id"] == 1
    assert message["text"] == "over http"
    assert message["author"] == {"id": alice.pk, "username": "alice"}
    await listener.disconnect()


def test_http_publish_rules() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    client = client_for(alice)
    assert post_json(Client(), "/api/topics/room.x/messages", {"text": "x"}).status_code == 401
    forbidden = post_json(client, f"/api/topics/user.{bob.pk}/messages", {"text": "x"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "forbidden"
    assert post_json(client, f"/api/topics/user.{alice.pk}/messages", {"text": "note"}).status_code == 201
    assert post_json(client, "/api/topics/nope/messages", {"text": "x"}).json()["error"] == "bad_topic"
    bad = client.post("/api/topics/room.x/messages", data="{not json", content_type="application/json")
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_json")
    assert post_json(client, "/api/topics/room.x/messages", {"text": ""}).json()["error"] == "bad_message"
    assert client.get("/api/topics/room.x/messages").status_code == 405


def test_http_publish_requires_csrf() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    assert post_json(client, "/api/topics/room.x/messages", {"text": "x"}).status_code == 403
    assert Message.objects.count() == 0


async def test_staff_notification_reaches_every_connection_of_the_user() -> None:
    admin = await sync_to_async(make_user)("admin", is_staff=True)
    alice = await sync_to_async(make_user)("alice")
    key = await sync_to_async(session_key_for)(alice)
    sockets = [ws_communicator(session_key=key) for _ in range(2)]
    for socket in sockets:
        await socket.connect()
        await receive_message(socket)
    body = {"text": "hello", "data": {"k": 1}}
    response = await sync_to_async(lambda: post_json(client_for(admin), f"/api/users/{alice.pk}/notify", body))()
    assert response.status_code == 202
    for socket in sockets:
        assert await receive_message(socket) == {
            "type": "notification",
            "text": "hello",
            "data": {"k": 1},
            "sender": {"id": admin.pk, "username": "admin"},
        }
        await socket.disconnect()


def test_notify_rules() -> None:
    admin, alice = make_user("admin", is_staff=True), make_user("alice")
    assert post_json(client_for(alice), f"/api/users/{admin.pk}/notify", {"text": "x"}).status_code == 403
    assert post_json(client_for(admin), "/api/users/999999/notify", {"text": "x"}).status_code == 404
    assert post_json(client_for(admin), f"/api/users/{alice.pk}/notify", {"data": 1}).status_code == 400


def test_prune_messages_keeps_the_retention_window_and_never_reuses_ids() -> None:
    alice = make_user("alice")
    with use_current_user(alice):
        for i in range(3):
            store_message("room.old", f"m{i}")
    Message.objects.filter(seq__lte=2).update(created_at=timezone.now() - timedelta(days=31))
    call_command("prune_messages", verbosity=0)
    assert list(Message.objects.values_list("seq", flat=True)) == [3]
    with use_current_user(alice):
        assert store_message("room.old", "next")["id"] == 4
