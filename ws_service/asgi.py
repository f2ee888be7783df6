"""ASGI entry point of the ws service: ``daphne ws_service.asgi:application``.

``django.setup()`` must run before anything that imports models or the auth
stack: it populates the app registry. Importing ``ws_service.app`` first
would raise AppRegistryNotReady. A test (tests/ws_service/test_asgi_import.py)
keeps this order.

Only setup, not ``get_asgi_application()``: that would also build Django's
HTTP handler with the web service's middleware (WhiteNoise scanning the
static files, sessions, CSRF, messages), which the ws service never calls
(its HTTP side is ``ws_service.http``), before a restarted process listens.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shared.settings")
django.setup(set_prefix=False)

# Imported after setup on purpose: these modules touch models and django.contrib.auth.
from ws_service.app import build_application  # noqa: E402

application = build_application()

# Logs name this process "ws" (unless SERVICE_NAME is set); its contexts are WebSocket connections.
from shared.log_format import set_process_identity  # noqa: E402

set_process_identity("ws", "connection")
