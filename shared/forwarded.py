"""X-Forwarded-For/-Proto, honoured only from trusted proxies (``FORWARDED_ALLOW_IPS``).

Daphne's ``--proxy-headers`` takes the client address and scheme from these
headers whatever peer sent them: anything that can reach the port directly
(another container on the network) could claim any address. Both services
therefore leave Daphne's own header handling off and wrap the application in
Uvicorn's ``ProxyHeadersMiddleware``, which applies the headers only when the
TCP peer is one of the trusted addresses or networks. Uvicorn (the ws
launcher's other server) gets the same list as its ``forwarded_allow_ips``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured

VARIABLE = "FORWARDED_ALLOW_IPS"
DEFAULT = ("127.0.0.1",)


def trusted_proxies(entries: Sequence[str], variable: str = VARIABLE) -> tuple[str, ...]:
    """The validated list: IP addresses, CIDR networks, or ``*`` (every peer) alone.

    Uvicorn silently treats a malformed entry as a literal that never matches;
    here it fails start-up, naming the variable.
    """
    if not entries:
        raise ImproperlyConfigured(f"{variable} is empty: list the proxy's addresses or networks")
    if "*" in entries:
        if len(entries) > 1:
            raise ImproperlyConfigured(f"{variable}: '*' trusts every peer and stands alone")
        return ("*",)
    for entry in entries:
        try:
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            raise ImproperlyConfigured(f"{variable}: {entry!r} is neither an IP address nor a network") from None
    return tuple(entries)


def with_trusted_proxy_headers(application: Any, trusted: Sequence[str]) -> Any:
    """``application`` taking client address and scheme from X-Forwarded-For/-Proto of ``trusted`` peers only."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    return ProxyHeadersMiddleware(application, trusted_hosts=list(trusted))
