"""ASGI entry point of the web service (served by Daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shared.settings")

application = get_asgi_application()
