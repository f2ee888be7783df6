"""``prune_messages --every``: the compose ``prune`` service's own schedule, bounded by ``--rounds``."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from shared.current_user import use_current_user
from shared.messaging import store_message
from shared.models import Message
from tests.support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def _age_every_message() -> None:
    Message.objects.update(created_at=timezone.now() - timedelta(days=31))


def test_every_prunes_at_start_and_then_each_interval(tmp_path: Path) -> None:
    alice = make_user("alice")
    with use_current_user(alice):
        store_message("room.prune", "first")
    _age_every_message()
    out = io.StringIO()

    def age_the_second_message_later() -> None:
        # Stored and aged between the first round and the second (1 s later).
        time.sleep(0.3)
        try:
            with use_current_user(alice):
                store_message("room.prune", "second")
            _age_every_message()
        finally:
            connection.close()  # this thread's own connection

    helper = threading.Thread(target=age_the_second_message_later)
    started = time.monotonic()
    helper.start()
    heartbeat = tmp_path / "heartbeat"
    call_command("prune_messages", "--every", "1", "--rounds", "2", "--heartbeat", str(heartbeat), stdout=out)
    helper.join(timeout=10)
    elapsed = time.monotonic() - started
    lines = out.getvalue().splitlines()
    assert lines == ["deleted 1 messages older than 30 days", "deleted 1 messages older than 30 days"]
    assert not Message.objects.exists()
    assert 1.0 <= elapsed < 5.0
    # Touched by the last round: the compose healthcheck reads its age.
    assert 0 <= time.time() - heartbeat.stat().st_mtime < 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "0.1"], "--every must be at least 1"),
        (["--every", "5", "--rounds", "0"], "--rounds must be at least 1"),
        (["--rounds", "2"], "--rounds and --heartbeat need --every"),
        (["--heartbeat", "heartbeat"], "--rounds and --heartbeat need --every"),
        (["--days", "0"], "--days must be at least 1"),
    ],
)
def test_bad_schedules_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("prune_messages", *args)
