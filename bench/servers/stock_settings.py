"""The product's settings (database, sessions, Redis URL) with channels-redis's stock layer, default config."""

from shared.settings import *  # noqa: F403
from shared.settings import REDIS_URL

CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
