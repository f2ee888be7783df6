"""``python -m django ws_push '{"type": "notice", ...}' [--user ID]``."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shared.push import broadcast, push_to_user


class Command(BaseCommand):
    help = "Push a JSON object to every connected client, or to one user's connections."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("payload", help='A JSON object with a "type", sent to clients unchanged.')
        parser.add_argument("--user", type=int, help="Only this user id's connections.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            payload = json.loads(options["payload"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"payload is not valid JSON: {exc}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise CommandError('payload must be a JSON object with a string "type"')
        if options["user"] is None:
            async_to_sync(broadcast)(payload)
            self.stdout.write("broadcast sent")
        else:
            async_to_sync(push_to_user)(options["user"], payload)
            self.stdout.write(f"sent to user {options['user']}")
