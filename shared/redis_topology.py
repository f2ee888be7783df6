"""Where Redis is: one server, a Sentinel-managed master, or channel-layer shards.

Parsed once from the environment by ``shared.settings`` (docs/operations.md: "Redis
beyond one node"); every bad value fails start-up with
``ImproperlyConfigured`` naming the variable.

* ``REDIS_URL`` alone: one Redis for everything.
* ``REDIS_SENTINELS`` set: Sentinel mode. The master of
  ``REDIS_SENTINEL_MASTER`` is discovered through the sentinels (and
  rediscovered after a failover); ``REDIS_URL`` then only carries the
  master's database number, username, password and TLS (``rediss://``),
  its host and port are ignored.
* ``CHANNEL_LAYER_SHARDS`` set: the channel layer spreads channels and
  groups over these servers (channels-redis' consistent hashing).

Connection slots, features' data, the layer monitor's sentinel key and the
readiness ``PING`` (:mod:`shared.redis_client`) always use one Redis: the
Sentinel master in Sentinel mode, else ``REDIS_URL``. Shards are for the
channel layer only (pushes, topic messages and revocation travel through it).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

DEFAULT_SENTINEL_PORT = 26379
DEFAULT_SENTINEL_MASTER = "mymaster"
_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """The sentinels to ask, and the name of the master they watch."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str = DEFAULT_SENTINEL_MASTER
    # AUTH for the sentinels themselves (the master's password is in REDIS_URL).
    password: str | None = None


@dataclass(frozen=True, slots=True)
class RedisTopology:
    """The Redis servers of one deployment."""

    # The one server; in Sentinel mode the master's db, credentials and TLS only.
    url: str
    sentinel: SentinelConfig | None = None
    # Channel-layer shards (empty: the layer uses the one server or the Sentinel master).
    shards: tuple[str, ...] = ()

    @property
    def layer_urls(self) -> tuple[str, ...]:
        """The channel layer's servers, when not in Sentinel mode."""
        return self.shards or (self.url,)


def validate_redis_url(value: str, name: str) -> str:
    """``value`` when it is a usable ``redis://``, ``rediss://`` or ``unix://`` URL."""
    url = value.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {value!r} is not a valid Redis URL ({exc})") from None
    if parts.scheme not in _SCHEMES:
        raise ImproperlyConfigured(
            f"{name}: {value!r} must start with redis://, rediss:// or unix:// (got scheme {parts.scheme!r})"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ImproperlyConfigured(f"{name}: {value!r} names no socket path")
        return url
    if not parts.hostname:
        raise ImproperlyConfigured(f"{name}: {value!r} has an empty host")
    if port == 0:
        raise ImproperlyConfigured(f"{name}: {value!r} has port 0")
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        raise ImproperlyConfigured(f"{name}: {value!r} has database {database!r}; use a number such as /0")
    return url


def parse_host_port(item: str, name: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port`` as ``(host, port)``."""
    text = item.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ImproperlyConfigured(f"{name}: {item!r} is not host:port (IPv6 as [addr]:port)")
        port_text = rest[1:] if rest else ""
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            host, port_text = text, ""
        elif ":" in host:
            raise ImproperlyConfigured(f"{name}: {item!r} is not host:port (write IPv6 addresses as [addr]:port)")
    if not host.strip():
        raise ImproperlyConfigured(f"{name}: {item!r} has an empty host")
    if not port_text:
        if text.endswith(":"):
            raise ImproperlyConfigured(f"{name}: {item!r} has an empty port")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ImproperlyConfigured(f"{name}: {item!r} has a bad port {port_text!r} (1-65535)")
    return host, int(port_text)


def _items(raw: str, name: str) -> list[str]:
    items = [item.strip() for item in raw.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(f"{name}={raw!r} has an empty entry (stray comma?)")
    return items


def redis_topology(
    url: str,
    *,
    sentinels: str = "",
    sentinel_master: str = DEFAULT_SENTINEL_MASTER,
    sentinel_password: str = "",
    shards: str = "",
) -> RedisTopology:
    """Parse and validate the raw environment values (see the module docstring)."""
    url = validate_redis_url(url, "REDIS_URL")
    sentinel: SentinelConfig | None = None
    if sentinels.strip():
        if urlsplit(url).scheme == "unix":
            raise ImproperlyConfigured("REDIS_URL: a unix:// URL cannot be combined with REDIS_SENTINELS")
        addresses = tuple(
            parse_host_port(item, "REDIS_SENTINELS", DEFAULT_SENTINEL_PORT)
            for item in _items(sentinels, "REDIS_SENTINELS")
        )
        if len(set(addresses)) != len(addresses):
            raise ImproperlyConfigured(f"REDIS_SENTINELS={sentinels!r} lists a sentinel twice")
        master = sentinel_master.strip()
        if not master or any(ch.isspace() for ch in master):
            raise ImproperlyConfigured(
                f"REDIS_SENTINEL_MASTER={sentinel_master!r} must be the non-empty name of the master "
                "(the first argument of `sentinel monitor` in sentinel.conf)"
            )
        sentinel = SentinelConfig(addresses, master, sentinel_password or None)
    elif sentinel_password:
        raise ImproperlyConfigured("REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not")
    shard_urls: tuple[str, ...] = ()
    if shards.strip():
        if sentinel is not None:
            raise ImproperlyConfigured(
                "CHANNEL_LAYER_SHARDS cannot be combined with REDIS_SENTINELS: shard the channel layer over "
                "plain Redis servers, or use one Sentinel-managed master for everything"
            )
        shard_urls = tuple(
            validate_redis_url(item, "CHANNEL_LAYER_SHARDS") for item in _items(shards, "CHANNEL_LAYER_SHARDS")
        )
        if len(set(shard_urls)) != len(shard_urls):
            raise ImproperlyConfigured(f"CHANNEL_LAYER_SHARDS={shards!r} lists a server twice")
    return RedisTopology(url=url, sentinel=sentinel, shards=shard_urls)
