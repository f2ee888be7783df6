"""``python -m django prune_messages [--days N] [--every SECONDS [--rounds N] [--heartbeat FILE]]``.

Deletes topic messages older than the retention window.

Without ``--every`` one round runs and the command exits (a cron job, the
Kubernetes CronJob in deploy/k8s). With it, the command is its own scheduler
(compose.yaml's ``prune`` service): a round at start, then one every
``SECONDS``. A round that fails (the database is away) is logged and the next
one runs on schedule; ``--rounds`` bounds the loop (tests). ``--heartbeat``
names a file touched after every successful round, whose age is the
container's healthcheck.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from shared.models import Message

logger = logging.getLogger("prune")

# Below this the loop would mostly hammer the database with empty deletes.
MINIMUM_INTERVAL_SECONDS = 1.0


class Command(BaseCommand):
    help = "Delete topic messages older than MESSAGE_RETENTION_DAYS (ids are never reused)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Override MESSAGE_RETENTION_DAYS.")
        parser.add_argument(
            "--every",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Keep running: a round now, then one every SECONDS (at least 1).",
        )
        parser.add_argument(
            "--rounds", type=int, default=None, help="With --every: stop after this many rounds (default: never)."
        )
        parser.add_argument(
            "--heartbeat", type=Path, default=None, help="With --every: touch this file after every successful round."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days: int = options["days"] if options["days"] is not None else settings.MESSAGE_RETENTION_DAYS
        if days < 1:
            raise CommandError(f"--days must be at least 1, not {days}")
        every: float | None = options["every"]
        rounds: int | None = options["rounds"]
        heartbeat: Path | None = options["heartbeat"]
        if every is None:
            if rounds is not None or heartbeat is not None:
                raise CommandError("--rounds and --heartbeat need --every")
            self._prune(days)
            return
        if every < MINIMUM_INTERVAL_SECONDS:
            raise CommandError(f"--every must be at least {MINIMUM_INTERVAL_SECONDS:g} seconds, not {every:g}")
        if rounds is not None and rounds < 1:
            raise CommandError(f"--rounds must be at least 1, not {rounds}")
        done = 0
        while True:
            started = time.monotonic()
            try:
                self._prune(days)
                if heartbeat is not None:
                    heartbeat.touch()
            except DatabaseError as exc:
                logger.warning("pruning failed, retrying in %gs: %s", every, exc)
            finally:
                # A connection broken by a database restart is not reused next round.
                close_old_connections()
            done += 1
            if rounds is not None and done >= rounds:
                return
            time.sleep(max(0.0, every - (time.monotonic() - started)))

    def _prune(self, days: int) -> None:
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = Message.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(f"deleted {deleted} messages older than {days} days")
