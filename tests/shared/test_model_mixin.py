"""created_by / author stamping from the current user."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from shared.current_user import use_current_user
from shared.model_mixins import CurrentUserRequired
from shared.models import Message
from tests.support.users import make_user

pytestmark = pytest.mark.django_db


def test_author_is_the_current_user() -> None:
    alice = make_user("alice")
    with use_current_user(alice):
        message = Message.objects.create(topic="room.lobby", text="hi")
    message.refresh_from_db()
    assert message.author_id == alice.pk


def test_saving_without_a_current_user_is_refused_clearly() -> None:
    with pytest.raises(CurrentUserRequired, match="current user"):
        Message.objects.create(topic="room.lobby", text="orphan")
    assert Message.objects.count() == 0


def test_anonymous_current_user_is_refused() -> None:
    from django.contrib.auth.models import AnonymousUser

    with use_current_user(AnonymousUser()), pytest.raises(CurrentUserRequired):
        Message.objects.create(topic="room.lobby", text="anon")


def test_explicit_author_is_kept_and_updates_do_not_restamp() -> None:
    alice, bob = make_user("alice"), make_user("bob")
    with use_current_user(bob):
        message = Message.objects.create(topic="room.lobby", text="on behalf", author=alice)
        message.text = "edited by bob"
        message.save()
    message.refresh_from_db()
    assert message.author_id == alice.pk


@pytest.mark.django_db(transaction=True)
async def test_stamped_from_async_code_through_database_sync_to_async() -> None:
    alice = await database_sync_to_async(make_user)("alice")

    def create() -> Message:
        return Message.objects.create(topic="room.async", text="from a consumer")

    with use_current_user(alice):
        message = await database_sync_to_async(create)()
        async_saved = Message(topic="room.async", text="async ORM")
        await async_saved.asave()
    assert message.author_id == alice.pk
    assert async_saved.author_id == alice.pk
