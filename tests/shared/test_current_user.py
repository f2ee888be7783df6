"""The current-user ContextVar and its visibility rules."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser, User

from shared.current_user import current_user, get_current_user, get_current_user_id, use_current_user


def _user(pk: int, username: str = "alice") -> User:
    return User(pk=pk, username=username)


def test_context_manager_sets_and_resets() -> None:
    alice = _user(1)
    assert get_current_user() is None
    with use_current_user(alice):
        assert get_current_user() is alice
        assert get_current_user_id() == 1
    assert get_current_user() is None


def test_reset_even_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), use_current_user(_user(1)):
        raise RuntimeError("boom")
    assert current_user.get() is None


def test_nested_blocks_restore_the_outer_user() -> None:
    alice, bob = _user(1), _user(2, "bob")
    with use_current_user(alice):
        with use_current_user(bob):
            assert get_current_user() is bob
        assert get_current_user() is alice


def test_anonymous_has_no_id() -> None:
    with use_current_user(AnonymousUser()):
        assert get_current_user_id() is None


async def test_tasks_copy_the_creators_context() -> None:
    alice = _user(1)
    seen_in_task: list[object] = []

    async def child() -> None:
        seen_in_task.append(get_current_user())
        current_user.set(_user(99, "mallory"))  # never visible to the creator

    with use_current_user(alice):
        task = asyncio.create_task(child())
    await task
    assert seen_in_task == [alice]
    assert get_current_user() is None


@pytest.mark.django_db(transaction=True)
async def test_sync_threads_see_the_user() -> None:
    alice = _user(1)
    with use_current_user(alice):
        assert await sync_to_async(get_current_user)() is alice
        assert await database_sync_to_async(get_current_user)() is alice
        assert await sync_to_async(get_current_user, thread_sensitive=False)() is alice


def test_plain_threads_start_empty() -> None:
    seen: list[object] = []
    with use_current_user(_user(1)):
        thread = threading.Thread(target=lambda: seen.append(get_current_user()))
        thread.start()
        thread.join()
    assert seen == [None]


async def test_concurrent_tasks_never_see_each_other() -> None:
    async def run_as(user: User) -> list[int | None]:
        seen = []
        with use_current_user(user):
            for _ in range(20):
                await asyncio.sleep(0)
                seen.append(get_current_user_id())
                seen.append(await sync_to_async(get_current_user_id)())
        return seen

    users = [_user(pk, f"u{pk}") for pk in range(1, 51)]
    results = await asyncio.gather(*(run_as(user) for user in users))
    for user, seen in zip(users, results, strict=True):
        assert set(seen) == {user.pk}
