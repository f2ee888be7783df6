"""``python -m django prune_messages [--days N]``: delete messages past the retention window."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from shared.models import Message


class Command(BaseCommand):
    help = "Delete topic messages older than MESSAGE_RETENTION_DAYS (ids are never reused)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Override MESSAGE_RETENTION_DAYS.")

    def handle(self, *args: Any, **options: Any) -> None:
        days: int = options["days"] if options["days"] is not None else settings.MESSAGE_RETENTION_DAYS
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = Message.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(f"deleted {deleted} messages older than {days} days")
