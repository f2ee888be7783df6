"""Development or production (``DJANGO_ENV``), and what production refuses.

The published development defaults (compose.yaml's secret key and database
password, the settings module's own debug key) are fine on a laptop and a
disaster anywhere else. They are accepted only in development mode, which is
chosen explicitly (``DJANGO_ENV=development``, as compose.yaml does) or
implied by ``DJANGO_DEBUG=1``; the default is production, where start-up fails
with a message naming the variable to change.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

DEVELOPMENT = "development"
PRODUCTION = "production"
MODES = (DEVELOPMENT, PRODUCTION)

# The settings module's own key for DJANGO_DEBUG=1 without DJANGO_SECRET_KEY.
DEBUG_SECRET_KEY = "django-insecure-development-only-never-use-in-production"
# Secret keys published in this repository (compose.yaml's default, the one above).
DEVELOPMENT_SECRET_KEYS = frozenset({"insecure-dev-key-change-me", DEBUG_SECRET_KEY})
# Django's startproject marks generated development keys with this prefix.
INSECURE_KEY_PREFIX = "django-insecure-"
# compose.yaml's default POSTGRES_PASSWORD, which also goes into its DATABASE_URL.
DEVELOPMENT_DATABASE_PASSWORDS = frozenset({"insecure-dev-db-password"})


def deployment_mode(raw: str, *, debug: bool) -> str:
    """``development`` or ``production`` from DJANGO_ENV's value (empty: unset)."""
    if not raw.strip():
        return DEVELOPMENT if debug else PRODUCTION
    mode = raw.strip().lower()
    if mode not in MODES:
        raise ImproperlyConfigured(f"DJANGO_ENV={raw!r} is not a mode: use development or production")
    if mode == PRODUCTION and debug:
        raise ImproperlyConfigured("DJANGO_DEBUG=1 is not allowed with DJANGO_ENV=production: set DJANGO_DEBUG=0")
    return mode


def refuse_development_secrets(mode: str, *, secret_key: str, database_password: str | None) -> None:
    """In production, fail on a published development secret, naming the variable that holds it."""
    if mode != PRODUCTION:
        return
    if secret_key in DEVELOPMENT_SECRET_KEYS or secret_key.startswith(INSECURE_KEY_PREFIX):
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is a published development key, refused with DJANGO_ENV=production: "
            "set a random one (python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or DJANGO_ENV=development for local use"
        )
    if database_password in DEVELOPMENT_DATABASE_PASSWORDS:
        raise ImproperlyConfigured(
            "DATABASE_URL holds the published development database password, refused with "
            "DJANGO_ENV=production: set POSTGRES_PASSWORD (compose) or a DATABASE_URL with a real password, "
            "or DJANGO_ENV=development for local use"
        )
