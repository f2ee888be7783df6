"""The one settings module of both services (DJANGO_SETTINGS_MODULE=shared.settings).

Everything that differs per deployment comes from an environment variable;
docs/configuration.md has the full table. Production secrets have no default: with
DJANGO_DEBUG off, start-up fails with a message naming the missing variable,
and unless DJANGO_ENV=development it refuses the published development ones.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from shared.channel_layer import RedisPoolOptions, channel_layers_config
from shared.deployment_mode import DEBUG_SECRET_KEY, deployment_mode, refuse_development_secrets
from shared.env import env_bool, env_float, env_int, env_list, env_required, env_str
from shared.log_format import LOG_FORMATS, identify_process_from_entry_point
from shared.redis_topology import DEFAULT_SENTINEL_MASTER, redis_topology

BASE_DIR = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------
DEBUG = env_bool("DJANGO_DEBUG", False)
# production unless DJANGO_ENV=development (or DJANGO_DEBUG=1): see shared/deployment_mode.py.
DJANGO_ENV = deployment_mode(env_str("DJANGO_ENV", ""), debug=DEBUG)
if DEBUG:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEBUG_SECRET_KEY)
else:
    SECRET_KEY = env_required("DJANGO_SECRET_KEY", "it is required when DJANGO_DEBUG is off")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "shared",
    "web_service",
]

MIDDLEWARE = [
    "web_service.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "web_service.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "web_service.middleware.CurrentUserMiddleware",
    "web_service.middleware.AccessLogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login that django-axes locked out into its 429 response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "web_service.urls"
WSGI_APPLICATION = "web_service.wsgi.application"
ASGI_APPLICATION = "web_service.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------------------
# Database (PostgreSQL)
# ---------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", "postgres://app:app@127.0.0.1:5432/app"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
refuse_development_secrets(DJANGO_ENV, secret_key=SECRET_KEY, database_password=DATABASES["default"].get("PASSWORD"))
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 2, minimum=1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ---------------------------------------------------------------------------
# Redis and the channel layer
# ---------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "ws")
CHANNEL_LAYER_CAPACITY = env_int("CHANNEL_LAYER_CAPACITY", 1000, minimum=1)
CHANNEL_LAYER_EXPIRY = env_int("CHANNEL_LAYER_EXPIRY", 60, minimum=1)
REDIS_POOL = RedisPoolOptions(
    max_connections=env_int("REDIS_MAX_CONNECTIONS", 64, minimum=2),
    pool_timeout=env_float("REDIS_POOL_TIMEOUT", 10.0, minimum=0.1),
    socket_timeout=env_float("REDIS_SOCKET_TIMEOUT", 15.0, minimum=6.0),
    connect_timeout=env_float("REDIS_CONNECT_TIMEOUT", 2.0, minimum=0.1),
)
# Redis past one node (docs/operations.md: "Redis beyond one node"): Sentinel, or channel-layer shards.
REDIS_TOPOLOGY = redis_topology(
    REDIS_URL,
    sentinels=env_str("REDIS_SENTINELS", ""),
    sentinel_master=env_str("REDIS_SENTINEL_MASTER", DEFAULT_SENTINEL_MASTER),
    sentinel_password=env_str("REDIS_SENTINEL_PASSWORD", ""),
    shards=env_str("CHANNEL_LAYER_SHARDS", ""),
)
CHANNEL_LAYERS = channel_layers_config(
    REDIS_TOPOLOGY,
    prefix=CHANNEL_LAYER_PREFIX,
    capacity=CHANNEL_LAYER_CAPACITY,
    expiry=CHANNEL_LAYER_EXPIRY,
    pool=REDIS_POOL,
)

# ---------------------------------------------------------------------------
# Sessions, authentication, WebSocket tickets
# ---------------------------------------------------------------------------
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_COOKIE_AGE", 14 * 24 * 3600, minimum=60)
SECURE_COOKIES = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

WS_TICKET_TTL_SECONDS = env_int("WS_TICKET_TTL_SECONDS", 30, minimum=1, maximum=60)
# Per ws process: threads (each with its own kept database connection) that resolve handshake
# sessions and tickets in parallel (ws_service/auth_db.py). The process's other ORM work uses one
# more connection, readiness one more: a ws process holds at most this + 2 connections.
WS_AUTH_DB_CONNECTIONS = env_int("WS_AUTH_DB_CONNECTIONS", 8, minimum=1, maximum=64)
# Per ws process: at most this many sessions of handshakes arriving together are read by one query
# (session_key IN (...), then their users pk IN (...)); larger bursts make several such batches,
# run in parallel on the WS_AUTH_DB_CONNECTIONS threads (ws_service/auth.py _read_sessions).
WS_AUTH_BATCH_SIZE = env_int("WS_AUTH_BATCH_SIZE", 100, minimum=1, maximum=1000)
# Per ws process: how long a resolved session (session key -> user) may serve further handshakes of
# the same session without a query (ws_service/auth_cache.py); 0 disables the cache. At most
# shared.revocation.REVOKED_MARK_SECONDS, the lifetime of the revocation marks that keep it exact.
WS_AUTH_CACHE_SECONDS = env_float("WS_AUTH_CACHE_SECONDS", 60.0, minimum=0.0, maximum=600.0)

# ---------------------------------------------------------------------------
# Login throttling (django-axes): the login page and the admin login
# ---------------------------------------------------------------------------
# Axes' backend only checks for a lockout; ModelBackend still logs users in, so
# sessions store ModelBackend's path (what ws_service.auth looks for).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# This many failed logins for one username from one client address lock that
# pair out for LOGIN_LOCKOUT_MINUTES (429); a successful login resets the count.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address as the web service sees it (REMOTE_ADDR: the proxy's X-Forwarded-For, set by the launcher).
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_LOCKOUT_CALLABLE = "web_service.lockout.lockout_response"
# Bounded rows: an attempt row per (username, address, user agent) that failed within
# the lock-out window, deleted once older; locked-out attempts write nothing; no row
# per successful login (web.access logs requests) and no failure log.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ACCESS_FAILURE_LOG = False

# ---------------------------------------------------------------------------
# Topics and history
# ---------------------------------------------------------------------------
MESSAGE_MAX_LENGTH = env_int("MESSAGE_MAX_LENGTH", 4000, minimum=1)
MESSAGE_RETENTION_DAYS = env_int("MESSAGE_RETENTION_DAYS", 30, minimum=1)
# How often each ws process checks that Redis still holds its channel-layer state.
WS_LAYER_CHECK_INTERVAL = env_float("WS_LAYER_CHECK_INTERVAL", 2.0, minimum=0.1)
# The WebSocket URL the demo page connects to; empty means same origin /ws/ (through the proxy).
WS_PUBLIC_URL = env_str("WS_PUBLIC_URL", "")

# ---------------------------------------------------------------------------
# Presence (ws_service/features/presence.py; docs/presence.md)
# ---------------------------------------------------------------------------
# A crashed replica's entries vanish within TTL + TTL/3 (refresh and sweep period): 27 s by default.
PRESENCE_TTL_SECONDS = env_int("PRESENCE_TTL_SECONDS", 20, minimum=3, maximum=300)
# Joins and leaves are batched per topic per process into at most one presence_diff per interval.
PRESENCE_DIFF_INTERVAL_SECONDS = env_float("PRESENCE_DIFF_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=60.0)
# A topic with more users than this gets no presence_diff frames: clients page through "presence".
PRESENCE_DIFF_MAX_SUBSCRIBERS = env_int("PRESENCE_DIFF_MAX_SUBSCRIBERS", 200, minimum=0)

# ---------------------------------------------------------------------------
# Per-user publish quota (WebSocket and HTTP, across replicas: shared.quota)
# ---------------------------------------------------------------------------
# At most this many messages and this many bytes of text (UTF-8) per user per
# window; more → error quota_exceeded (WS) / 429 (HTTP), nothing stored.
PUBLISH_QUOTA_MESSAGES = env_int("PUBLISH_QUOTA_MESSAGES", 600, minimum=1)
PUBLISH_QUOTA_BYTES = env_int("PUBLISH_QUOTA_BYTES", 1024 * 1024, minimum=1024)
PUBLISH_QUOTA_WINDOW_SECONDS = env_int("PUBLISH_QUOTA_WINDOW_SECONDS", 60, minimum=1, maximum=86400)

# ---------------------------------------------------------------------------
# WebSocket limits
# ---------------------------------------------------------------------------
# Largest inbound message in bytes: Daphne (the ws launcher) fails a larger one
# with close 1009, and the ASGI layer enforces it again for any other server.
WS_MAX_MESSAGE_BYTES = env_int("WS_MAX_MESSAGE_BYTES", 64 * 1024, minimum=1024)
# Deepest JSON nesting and longest string (key or value, in characters) of a frame.
WS_MAX_JSON_DEPTH = env_int("WS_MAX_JSON_DEPTH", 16, minimum=2)
WS_MAX_STRING_LENGTH = env_int("WS_MAX_STRING_LENGTH", 8192, minimum=64)
# Per-connection token bucket: frames per second, and the burst allowed on top.
WS_RATE_LIMIT_PER_SECOND = env_float("WS_RATE_LIMIT_PER_SECOND", 20.0, minimum=0.1)
WS_RATE_LIMIT_BURST = env_int("WS_RATE_LIMIT_BURST", 40, minimum=1)
# This many rate-limited frames within 10 s close the connection with 1008.
WS_RATE_LIMIT_STRIKES = env_int("WS_RATE_LIMIT_STRIKES", 50, minimum=1)
# Open connections per user across every replica; more are closed with 4429.
WS_MAX_CONNECTIONS_PER_USER = env_int("WS_MAX_CONNECTIONS_PER_USER", 20, minimum=1)
# A counted connection lives this long without its process's refresh (every TTL/3), so a
# crashed replica's connections stop counting within TTL + TTL/3.
WS_CONNECTION_TTL_SECONDS = env_int("WS_CONNECTION_TTL_SECONDS", 20, minimum=3, maximum=300)
# Unsent output per connection (bytes queued in the server for a socket): over it, the
# connection is aborted (close code 4408 to the application, the client sees 1006).
WS_MAX_PENDING_BYTES = env_int("WS_MAX_PENDING_BYTES", 1024 * 1024, minimum=64 * 1024)
# Daphne: a send waits while the socket holds over half of WS_MAX_PENDING_BYTES; after this long
# without draining below it, the connection is aborted as a slow consumer (4408).
WS_SEND_TIMEOUT_SECONDS = env_float("WS_SEND_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# Received frames one connection may hold unconsumed (its consumer busy): at this many, Daphne
# stops reading the socket (TCP backpressure) until the consumer has taken half.
WS_MAX_PENDING_FRAMES = env_int("WS_MAX_PENDING_FRAMES", 64, minimum=2)
# Messages one subscribe (or one gap fill) replays; beyond, a more_history frame says where to continue.
WS_REPLAY_MAX_MESSAGES = env_int("WS_REPLAY_MAX_MESSAGES", 1000, minimum=1)
# A connection announces at most one typing indicator per topic per this many seconds.
WS_TYPING_INTERVAL_SECONDS = env_float("WS_TYPING_INTERVAL_SECONDS", 2.0, minimum=0.0)
# Topics one connection may follow at once; one more gets error too_many_subscriptions.
WS_MAX_SUBSCRIPTIONS_PER_CONNECTION = env_int("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", 100, minimum=1)
# Per client address (an IPv6 address counts by its /64), per process: a token bucket of
# handshakes. More are accepted and closed with 4029 before any origin, auth or database work.
# A rate of 0 turns the limit off. The table keeps at most this many addresses (oldest evicted).
WS_HANDSHAKES_PER_ADDRESS_PER_SECOND = env_float("WS_HANDSHAKES_PER_ADDRESS_PER_SECOND", 20.0, minimum=0.0)
WS_HANDSHAKE_BURST_PER_ADDRESS = env_int("WS_HANDSHAKE_BURST_PER_ADDRESS", 100, minimum=1)
WS_HANDSHAKE_LIMIT_TRACKED_ADDRESSES = env_int("WS_HANDSHAKE_LIMIT_TRACKED_ADDRESSES", 100_000, minimum=1)

# ---------------------------------------------------------------------------
# Security behind a reverse proxy
# ---------------------------------------------------------------------------
if env_bool("DJANGO_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = False
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
# Off by default: both commit every subdomain (and, once preloaded, browsers for
# months) to https. `check --deploy` warns until they are on (docs/deployment.md: production checklist).
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Django's defaults, stated so that they are visibly deliberate.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# ---------------------------------------------------------------------------
# Health checks
# ---------------------------------------------------------------------------
HEALTH_CHECK_TIMEOUT = env_float("HEALTH_CHECK_TIMEOUT", 2.0, minimum=0.1, maximum=2.0)
# A readiness result is reused this long: any number of probes cost one check per process per period.
HEALTH_CHECK_CACHE_SECONDS = env_float("HEALTH_CHECK_CACHE_SECONDS", 1.0, minimum=0.0, maximum=10.0)

# ---------------------------------------------------------------------------
# Internationalisation and static files
# ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The dependency-free JS client, served to the demo page as static "ws-client.js".
STATICFILES_DIRS = [BASE_DIR / "clients" / "js" / "src"]
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Without collectstatic (tests, a fresh checkout) fall back to unhashed names.
WHITENOISE_MANIFEST_STRICT = env_bool("DJANGO_STATIC_MANIFEST_STRICT", False)

# ---------------------------------------------------------------------------
# Logging: every record carries the user id and the request/connection id
# ---------------------------------------------------------------------------
LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "INFO").upper()
# json: one object per line (production); text: readable lines (development).
LOG_FORMAT = env_str("LOG_FORMAT", "json").strip().lower()
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(
        f"LOG_FORMAT={os.environ['LOG_FORMAT']!r} is not a log format: use json (production) or text (development)"
    )
# Empty: the process is named by its entry point ("web", "ws": python -m <service>, or
# its ASGI module); else "django" (management commands).
SERVICE_NAME = env_str("SERVICE_NAME", "").strip()
identify_process_from_entry_point()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "shared.log_filters.RequestContextFilter"}},
    "formatters": {
        "json": {"()": "shared.log_format.JsonFormatter", "service": SERVICE_NAME},
        "text": {"()": "shared.log_format.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_context"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # django-axes logs every login at INFO; its lock-outs and failures stay (WARNING).
        "axes": {"level": "WARNING"},
    },
}
