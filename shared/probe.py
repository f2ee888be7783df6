"""A container healthcheck: ``python -m shared.probe URL [--timeout SECONDS]``.

The official ``python:3.13-slim`` image has no curl or wget, so Dockerfile
HEALTHCHECKs and compose healthchecks call this instead. It uses the standard
library only and imports nothing from Django, so it starts in milliseconds and
works even when the settings are broken.

Prints one line, ``URL -> STATUS BODY`` (the body cut short), which Docker
keeps in ``docker inspect``'s health log. Exit status: 0 on a 2xx answer,
1 on any other answer or when the server cannot be reached, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_USAGE = 2
DEFAULT_TIMEOUT = 3.0
BODY_PREVIEW = 200


def probe(url: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int | None, str]:
    """``(status, detail)`` of a GET on ``url``; ``status`` is ``None`` when nothing answered.

    Proxy environment variables are ignored: a healthcheck talks to its own
    container, never through a proxy.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"User-Agent": "shared.probe"})  # noqa: S310 - scheme checked in main()
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
            body = response.read(BODY_PREVIEW)
    except urllib.error.HTTPError as error:
        status = error.code
        body = error.read(BODY_PREVIEW)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return None, f"unreachable: {reason}"
    return status, body.decode("utf-8", "replace").strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Probe the URL given on the command line; the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m shared.probe", description="Exit 0 when URL answers 2xx.")
    parser.add_argument("url", help="an http:// URL, e.g. http://127.0.0.1:8000/healthz")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds (default: %(default)s)")
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("http", "https"):
        parser.error(f"{args.url!r} is not an http:// or https:// URL")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    status, detail = probe(args.url, args.timeout)
    print(f"{args.url} -> {status if status is not None else '---'} {detail}")
    return EXIT_OK if status is not None and 200 <= status < 300 else EXIT_UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
