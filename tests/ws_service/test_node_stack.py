"""Over the full ws ASGI stack: connections hold no channel of their own, the process holds one membership per group."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from shared.groups import BROADCAST_GROUP, user_group
from shared.push import push_to_user
from tests.support.communicators import receive_message, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.node import get_node

pytestmark = pytest.mark.django_db(transaction=True)


async def _members(group: str) -> set[str]:
    layer: Any = get_channel_layer()
    connection = layer.connection(layer.consistent_hash(group))
    members: list[bytes] = await connection.zrange(layer._group_key(group), 0, -1)
    return {member.decode() for member in members}


async def test_three_sockets_of_a_user_are_one_membership_and_each_gets_the_push() -> None:
    user = await sync_to_async(make_user)("alice")
    key = await sync_to_async(session_key_for)(user)
    sockets = [ws_communicator(session_key=key) for _ in range(3)]
    for socket in sockets:
        assert (await socket.connect())[0]
        assert (await receive_message(socket))["type"] == "welcome"
    node = get_node()
    assert await _members(user_group(user.pk)) == {node.channel}  # one per process, not per socket
    assert node.channel in await _members(BROADCAST_GROUP)
    assert len(node.local[user_group(user.pk)]) == 3
    await push_to_user(user.pk, {"type": "notification", "text": "hi", "data": {}, "sender": None})
    for socket in sockets:
        assert (await receive_message(socket))["text"] == "hi"
    for socket in sockets[:2]:
        await socket.disconnect()
    assert await _members(user_group(user.pk)) == {node.channel}  # the last one still needs it
    await sockets[2].disconnect()
    assert await _members(user_group(user.pk)) == set()
