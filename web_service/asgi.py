"""ASGI entry point of the web service (served by Daphne)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shared.settings")

application = get_asgi_application()

# Logs name this process "web" (unless SERVICE_NAME is set); its contexts are HTTP requests.
from shared.log_format import set_process_identity  # noqa: E402

set_process_identity("web", "request")
