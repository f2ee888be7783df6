"""ASGI entry point of the ws service: ``daphne ws_service.asgi:application``.

``get_asgi_application()`` must run before anything that imports models or
the auth stack: it calls ``django.setup()``, which populates the app registry.
Importing ``ws_service.app`` first would raise AppRegistryNotReady. A test
(tests/ws_service/test_asgi_import.py) keeps this order.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shared.settings")
django_asgi_app = get_asgi_application()

# Imported after setup on purpose: these modules touch models and django.contrib.auth.
from ws_service.app import build_application  # noqa: E402

application = build_application()

# Logs name this process "ws" (unless SERVICE_NAME is set); its contexts are WebSocket connections.
from shared.log_format import set_process_identity  # noqa: E402

set_process_identity("ws", "connection")
