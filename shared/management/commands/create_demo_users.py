"""``python -m django create_demo_users [--password P]``: two non-staff users for the demo.

Development only: refused unless ``DJANGO_ENV=development`` (compose's default),
so a production database never gets accounts with printed passwords. Run again,
it sets the users' passwords again (and so logs their sessions out).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from shared.deployment_mode import DEVELOPMENT

DEMO_USERNAMES = ("alice", "bob")
LOGIN_PATH = "/accounts/login/"


class Command(BaseCommand):
    help = "Create (or reset) the demo users alice and bob, non-staff; development only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", help="The password of both users (default: a new random one each).")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.DJANGO_ENV != DEVELOPMENT:
            raise CommandError(
                f"create_demo_users is for development only (DJANGO_ENV={settings.DJANGO_ENV}); "
                "create real users with createsuperuser or the admin"
            )
        given: str | None = options["password"]
        if given is not None and not given:
            raise CommandError("--password must not be empty")
        user_model = get_user_model()
        for username in DEMO_USERNAMES:
            password = given or secrets.token_urlsafe(9)
            user, created = user_model.objects.get_or_create(username=username)
            user.is_staff = False
            user.is_superuser = False
            user.is_active = True
            user.set_password(password)
            user.save()
            self.stdout.write(f"{username} {password} ({'created' if created else 'password set again'})")
        self.stdout.write(f"Log in at {LOGIN_PATH} as each user, in two browsers or private windows.")
