"""The per-process node against a real Redis channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

from shared.channel_layer import GROUP_KEY
from shared.groups import BROADCAST_GROUP, user_group
from shared.messaging import TOPIC_MESSAGE_EVENT
from shared.topics import topic_group
from ws_service.node import ENCODED_KEY, Node, event_group

pytestmark = pytest.mark.usefixtures("service_env")


class Inbox:
    """A local member that keeps what it is handed (a consumer queues it instead)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def deliver_local(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.arrived.set()


def _message(topic: str, message_id: int) -> dict[str, Any]:
    return {"type": TOPIC_MESSAGE_EVENT, "message": {"type": "message", "topic": topic, "id": message_id}}


async def _members(group: str) -> int:
    layer: Any = get_channel_layer()
    connection = layer.connection(layer.consistent_hash(group))
    count: int = await connection.zcard(layer._group_key(group))
    return count


async def _holds(node: Node, groups: list[str]) -> list[bool]:
    """Whether ``node``'s channel is a member of each group in Redis (other processes may be, too)."""
    layer: Any = get_channel_layer()
    held = []
    for group in groups:
        connection = layer.connection(layer.consistent_hash(group))
        held.append(await connection.zscore(layer._group_key(group), node.channel) is not None)
    return held


async def _wait(inbox: Inbox, count: int) -> None:
    async with asyncio.timeout(5):
        while len(inbox.events) < count:
            inbox.arrived.clear()
            await inbox.arrived.wait()


class CountingLayer:
    """The real layer, counting the membership calls that reach Redis."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.adds: list[list[str]] = []
        self.discards: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name)

    async def group_add_many(self, groups: list[str], channel: str) -> None:
        self.adds.append(list(groups))
        await self.layer.group_add_many(groups, channel)

    async def group_discard_many(self, groups: list[str], channel: str) -> None:
        self.discards.append(list(groups))
        await self.layer.group_discard_many(groups, channel)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> tuple[Node, CountingLayer]:
    """A node of its own whose membership calls to the real layer are counted."""
    node = Node()
    counting = CountingLayer(get_channel_layer())
    monkeypatch.setattr(node, "_layer", lambda: counting)
    return node, counting


async def test_many_local_members_share_one_group_membership() -> None:
    node = Node()
    inboxes = [Inbox() for _ in range(50)]
    group = topic_group("room.node-a")
    for inbox in inboxes:
        await node.join(inbox, [group])
    assert await _members(group) == 1  # one copy per process, not per connection
    layer: Any = get_channel_layer()
    await layer.group_send(group, _message("room.node-a", 1))
    for inbox in inboxes:
        await _wait(inbox, 1)
        assert inbox.events[0]["message"]["id"] == 1
    assert inboxes[0].events[0] is inboxes[1].events[0]  # one event, shared
    assert inboxes[0].events[0][ENCODED_KEY] == '{"type":"message","topic":"room.node-a","id":1}'
    for inbox in inboxes[:-1]:
        await node.leave(inbox, [group])
    assert await _members(group) == 1
    await node.leave(inboxes[-1], [group])
    assert await _members(group) == 0  # the last one leaves the group
    assert group not in node.local


async def test_user_session_and_broadcast_groups_reach_their_members_only() -> None:
    node = Node()
    alice, bob = Inbox(), Inbox()
    await node.join(alice, [user_group(9001), BROADCAST_GROUP, "session.node-a"])
    await node.join(bob, [user_group(9002), BROADCAST_GROUP])
    layer: Any = get_channel_layer()
    await layer.group_send(user_group(9001), {"type": "deliver", "payload": {"type": "to-alice"}})
    await layer.group_send("session.node-a", {"type": "auth.revoked", "reason": "logout"})
    await layer.group_send(BROADCAST_GROUP, {"type": "deliver", "payload": {"type": "to-all"}})
    await _wait(alice, 3)
    await _wait(bob, 1)
    assert [event.get("payload", {}).get("type", event["type"]) for event in alice.events] == [
        "to-alice",
        "auth.revoked",
        "to-all",
    ]
    assert [event["payload"]["type"] for event in bob.events] == ["to-all"]
    assert alice.events[0][GROUP_KEY] == user_group(9001)
    await node.leave_all(alice)
    await node.leave_all(bob)
    assert node.local == {}
    assert await _members(user_group(9001)) == 0


async def test_a_connect_costs_one_pipelined_call_and_none_once_its_groups_are_joined(
    counted: tuple[Node, CountingLayer],
) -> None:
    node, counting = counted
    first, second, third = Inbox(), Inbox(), Inbox()
    await node.join(first, [user_group(9101), BROADCAST_GROUP, "session.node-b"])
    assert counting.adds == [[user_group(9101), BROADCAST_GROUP, "session.node-b"]]
    await node.join(second, [user_group(9101), BROADCAST_GROUP, "session.node-b"])
    assert len(counting.adds) == 1  # a second connection of the same session: no round trip
    await node.join(third, [user_group(9102), BROADCAST_GROUP])
    assert counting.adds[-1] == [user_group(9102)]  # only the group new to this process
    for inbox in (first, second, third):
        await node.leave_all(inbox)


async def test_close_leaves_every_group_in_one_call_and_the_members_leaves_cost_none(
    counted: tuple[Node, CountingLayer],
) -> None:
    node, counting = counted
    inboxes = [Inbox() for _ in range(20)]
    for number, inbox in enumerate(inboxes):
        await node.join(inbox, [user_group(9300 + number), BROADCAST_GROUP, topic_group("room.node-close")])
    groups = [user_group(9300 + number) for number in range(20)] + [BROADCAST_GROUP, topic_group("room.node-close")]
    assert await _holds(node, groups) == [True] * len(groups)

    await node.close()  # the process drains
    assert node.dispatch({**_message("room.node-close", 1), GROUP_KEY: topic_group("room.node-close")}) == 0
    assert len(counting.discards) == 1
    assert sorted(counting.discards[0]) == sorted(groups)
    assert await _holds(node, groups) == [False] * len(groups)
    await node.rejoin()  # e.g. the layer monitor, while draining: puts back none of them
    assert await _holds(node, groups) == [False] * len(groups)
    layer: Any = get_channel_layer()
    await layer.group_send(BROADCAST_GROUP, {"type": "deliver", "payload": {"type": "to-all"}})
    for inbox in inboxes:
        await node.leave_all(inbox)
    assert len(counting.discards) == 1  # no round trip per connection
    assert node.local == {}
    assert [inbox.events for inbox in inboxes] == [[] for _ in inboxes]  # nothing for closing connections

    late = Inbox()  # joined after the close: its group is left in Redis as usual
    await node.join(late, [user_group(9399)])
    await node.leave_all(late)
    assert counting.discards[-1] == [user_group(9399)]
    assert await _members(user_group(9399)) == 0


async def test_rejoin_restores_memberships_redis_lost() -> None:
    node = Node()
    inbox = Inbox()
    groups = [topic_group("room.node-d"), user_group(9201)]
    await node.join(inbox, groups)
    layer: Any = get_channel_layer()
    for group in groups:
        connection = layer.connection(layer.consistent_hash(group))
        await connection.delete(layer._group_key(group))  # Redis lost the group
        assert await _members(group) == 0
    await node.rejoin()
    for group in groups:
        assert await _members(group) == 1
    await layer.group_send(topic_group("room.node-d"), _message("room.node-d", 7))
    await layer.group_send(user_group(9201), {"type": "deliver", "payload": {}})
    await _wait(inbox, 2)
    await node.leave_all(inbox)


def test_event_group_reads_the_group_key_and_falls_back_to_the_topic() -> None:
    assert event_group({"type": "deliver", GROUP_KEY: "user.5"}) == "user.5"
    assert event_group(_message("room.x", 1)) == topic_group("room.x")
    assert event_group({"type": "topic.notice", "topic": "room.y"}) == topic_group("room.y")
    assert event_group({"type": "deliver", "payload": {}}) is None


async def test_memberships_are_renewed_before_the_layer_expires_them() -> None:
    node = Node()
    inbox = Inbox()
    group = user_group(9301)
    await node.join(inbox, [group])
    layer: Any = get_channel_layer()
    connection = layer.connection(layer.consistent_hash(group))
    assert node.channel is not None
    joined_at = await connection.zscore(layer._group_key(group), node.channel)
    assert not await node.refresh_if_due()  # fresh: no round trip
    node.refreshed_at -= layer.group_expiry / 2 + 1
    await asyncio.sleep(1.1)  # group_add scores are wall-clock seconds
    assert await node.refresh_if_due()
    assert await connection.zscore(layer._group_key(group), node.channel) > joined_at
    await node.leave_all(inbox)


async def test_groups_of_follows_joins_and_leaves_of_each_member() -> None:
    node = Node()
    alice, bob = Inbox(), Inbox()
    await node.join(alice, ["g.a", "g.shared"])
    await node.join(bob, ["g.shared", "g.b"])
    await node.join(alice, ["g.c"])
    assert sorted(node.groups_of(alice)) == ["g.a", "g.c", "g.shared"]
    await node.leave(alice, ["g.a", "g.unknown"])
    assert sorted(node.groups_of(alice)) == ["g.c", "g.shared"]
    await node.leave_all(alice)
    assert node.groups_of(alice) == []
    assert sorted(node.groups_of(bob)) == ["g.b", "g.shared"]
    assert sorted(node.local) == ["g.b", "g.shared"]
    await node.leave_all(bob)
    assert node.local == {}
