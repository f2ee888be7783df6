"""The per-process session cache (ws_service.auth_cache): fewer queries, never a revoked session.

Real PostgreSQL and Redis; queries are counted on every thread (the
authentication threads included) by wrapping Django's cursor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from importlib import import_module
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db.backends.utils import CursorWrapper
from django.http import HttpRequest
from django.test import override_settings
from django.utils import timezone

from shared.tickets import issue_ticket
from tests.support.communicators import receive_message, welcomed, ws_communicator
from tests.support.users import make_user, session_key_for
from ws_service.auth_cache import get_auth_cache
from ws_service.kernel import KernelConsumer
from ws_service.layer_monitor import get_monitor
from ws_service.node import Node, get_node
from ws_service.protocol import CLOSE_UNAUTHENTICATED
from ws_service.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def counting_queries() -> Iterator[list[str]]:
    """Every statement sent while the block runs, by any thread (not the connection-naming one)."""
    statements: list[str] = []
    original = CursorWrapper.execute

    def counted(self: CursorWrapper, sql: str, *args: Any, **kwargs: Any) -> Any:
        if "application_name" not in sql:
            statements.append(sql)
        return original(self, sql, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", counted)
        yield statements


async def _user_and_session(username: str) -> tuple[User, str]:
    user = await sync_to_async(make_user)(username)
    return user, await sync_to_async(session_key_for)(user)


async def _refused_code(key: str) -> int:
    """The close code of a handshake that must not be welcomed (the first frame is the close)."""
    communicator = ws_communicator(session_key=key)
    connected, _ = await communicator.connect()
    assert connected  # accepted, then closed with a code the client can act on
    output = await communicator.receive_output(3)
    assert output["type"] == "websocket.close", output
    code: int = output["code"]
    return code


async def _disconnect(*communicators: WebsocketCommunicator) -> None:
    for communicator in communicators:
        await communicator.disconnect()


async def _eventually(condition: Callable[[], bool], wait: float = 3.0) -> None:
    async with asyncio.timeout(wait):
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


# -- fewer queries ------------------------------------------------------------------------------


async def test_a_sessions_second_connection_makes_no_query_and_the_first_does() -> None:
    _, key = await _user_and_session("alice")
    with counting_queries() as first:
        one = await welcomed(key)
    with counting_queries() as second:
        two = await welcomed(key)
    assert len(first) >= 2  # session and user
    assert second == []
    await _disconnect(one, two)


async def test_connections_of_one_session_share_one_user_instance() -> None:
    _, key = await _user_and_session("alice")
    one, two = await welcomed(key), await welcomed(key)
    users = {id(cast("KernelConsumer", connection).user) for connection in registry.connections}
    assert len(registry.connections) == 2
    assert len(users) == 1
    await _disconnect(one, two)


@override_settings(WS_AUTH_CACHE_SECONDS=0)
async def test_cache_seconds_zero_disables_the_cache() -> None:
    _, key = await _user_and_session("alice")
    one = await welcomed(key)
    with counting_queries() as second:
        two = await welcomed(key)
    assert len(second) >= 2
    assert len(get_auth_cache()) == 0
    await _disconnect(one, two)


async def test_tickets_are_not_cached() -> None:
    from shared.tickets import issue_ticket

    alice, key = await _user_and_session("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice, key)
    communicator = ws_communicator(ticket=ticket)
    assert (await communicator.connect())[0]
    assert (await receive_message(communicator))["type"] == "welcome"
    assert len(get_auth_cache()) == 0
    await communicator.disconnect()


# -- bound ----------------------------------------------------------------------------------------


async def test_at_most_one_entry_per_session_with_an_open_connection() -> None:
    keys = [(await _user_and_session(name))[1] for name in ("alice", "bob", "carol")]
    communicators = [await welcomed(key) for key in keys for _ in range(3)]
    assert len(get_auth_cache()) == 3
    await _disconnect(*communicators[:3])  # every connection of alice's session
    assert len(get_auth_cache()) == 2
    await _disconnect(*communicators[3:])
    assert len(get_auth_cache()) == 0


async def test_an_entry_is_not_used_after_the_sessions_last_connection_closed() -> None:
    _, key = await _user_and_session("alice")
    one = await welcomed(key)
    await one.disconnect()
    with counting_queries() as again:
        two = await welcomed(key)
    assert len(again) >= 2
    await two.disconnect()


@override_settings(WS_AUTH_CACHE_SECONDS=0.3)
async def test_an_entry_is_not_used_after_ws_auth_cache_seconds() -> None:
    _, key = await _user_and_session("alice")
    one = await welcomed(key)
    await asyncio.sleep(0.4)
    with counting_queries() as later:
        two = await welcomed(key)
    assert len(later) >= 2
    await _disconnect(one, two)


async def test_an_entry_is_not_used_past_the_sessions_expiry() -> None:
    """A change that sends no event (``QuerySet.update``) still cannot outlive the session's expiry."""
    _, key = await _user_and_session("alice")
    await Session.objects.filter(session_key=key).aupdate(expire_date=timezone.now() + timedelta(seconds=1))
    one = await welcomed(key)
    await asyncio.sleep(1.1)
    assert await _refused_code(key) == CLOSE_UNAUTHENTICATED
    await one.disconnect()


# -- revocation is exact --------------------------------------------------------------------------


def _logout(user: User, key: str) -> None:
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    request.user = user
    logout(request)


def _delete_session(user: User, key: str) -> None:
    Session.objects.get(session_key=key).delete()


def _change_password(user: User, key: str) -> None:
    user.set_password("a-different-password-123")
    user.save()


def _deactivate(user: User, key: str) -> None:
    user.is_active = False
    user.save()


def _delete_user(user: User, key: str) -> None:
    user.delete()


REVOCATIONS = [_logout, _delete_session, _change_password, _deactivate, _delete_user]


@pytest.mark.parametrize("revoke", REVOCATIONS, ids=lambda revoke: revoke.__name__.strip("_"))
async def test_a_revoked_session_cannot_connect_from_its_cached_entry(revoke: Callable[[User, str], None]) -> None:
    """Revoke while a connection keeps the entry alive, then connect at once: refused, never welcomed."""
    alice, key = await _user_and_session("alice")
    open_one = await welcomed(key)
    second = await welcomed(key)  # served from the cache: the entry exists
    await second.disconnect()
    assert len(get_auth_cache()) == 1
    await sync_to_async(revoke)(alice, key)
    assert await _refused_code(key) == CLOSE_UNAUTHENTICATED
    await open_one.disconnect()


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "first-connection"])
async def test_a_revocation_racing_the_handshake_refuses_it(cached: bool) -> None:
    """The session is revoked, and its event handled by the node, after the user was resolved, before the join."""
    alice, key = await _user_and_session("alice")
    keeper = await welcomed(key) if cached else None
    join_many = Node.join_many
    revoked = False

    async def join_after_a_revocation(node: Node, joins: Any, send: Any) -> Any:
        nonlocal revoked
        if not revoked and any(member not in registry.connections for member, _ in joins):
            revoked = True
            await sync_to_async(_logout)(alice, key)
            if cached:  # the node got the event: the entry is gone, the keeper is closing
                await _eventually(lambda: len(get_auth_cache()) == 0)
        return await join_many(node, joins, send)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Node, "join_many", join_after_a_revocation)
        assert await _refused_code(key) == CLOSE_UNAUTHENTICATED
    assert revoked
    if keeper is not None:
        await keeper.disconnect()


async def test_a_revocation_racing_a_ticket_handshake_refuses_it() -> None:
    """The ticket is redeemed, then its session is logged out, before the join: the mark refuses the connection."""
    alice, key = await _user_and_session("alice")
    ticket, _ = await sync_to_async(issue_ticket)(alice, key)
    join_many = Node.join_many
    revoked = False

    async def join_after_a_revocation(node: Node, joins: Any, send: Any) -> Any:
        nonlocal revoked
        if not revoked:
            revoked = True
            await sync_to_async(_logout)(alice, key)
        return await join_many(node, joins, send)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Node, "join_many", join_after_a_revocation)
        communicator = ws_communicator(ticket=ticket)
        connected, _ = await communicator.connect()
        assert connected
        output = await communicator.receive_output(3)
        assert output["type"] == "websocket.close", output
        assert output["code"] == CLOSE_UNAUTHENTICATED
    assert revoked
    assert len(get_auth_cache()) == 0  # a ticket's read is never cached


async def test_a_revocation_mark_alone_refuses_a_cached_handshake() -> None:
    """The event still in flight (not yet handled by the node): the mark in Redis refuses the handshake."""
    alice, key = await _user_and_session("alice")
    keeper = await welcomed(key)
    assert len(get_auth_cache()) == 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(get_node(), "_observers", {})  # the node never evicts: only the mark can refuse
        await sync_to_async(_delete_session)(alice, key)
        assert await _refused_code(key) == CLOSE_UNAUTHENTICATED
    await keeper.disconnect()


async def test_redis_losing_the_processs_state_clears_the_cache() -> None:
    """FLUSHALL: events may have been lost, so the next handshake reads the database again."""
    _, key = await _user_and_session("alice")
    one, two = await welcomed(key), await welcomed(key)
    assert len(get_auth_cache()) == 1
    monitor = get_monitor()
    await monitor.check()  # plants the sentinel
    layer: Any = get_channel_layer()
    await layer.connection(0).flushall()
    await monitor.check()  # notices the loss, rejoins
    assert len(get_auth_cache()) == 0
    with counting_queries() as after:
        three = await welcomed(key)
    assert len(after) >= 2
    await _disconnect(one, two, three)
