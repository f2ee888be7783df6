"""Run the ws service: ``python -m ws_service`` (the ws image's command).

Serves ``ws_service.asgi:application`` with Daphne (default) or Uvicorn
(``WS_SERVER=uvicorn``), in this process or as ``WS_WORKERS`` processes on one
shared socket, with timeouts and limits set deliberately from the environment,
and drains on SIGTERM:

1. the listening socket closes, ``/readyz`` turns 503, and a handshake already in
   flight is accepted and closed with 1012 (clients reconnect elsewhere);
2. every open connection is closed with 1012 ("service restart") and a reason;
3. each connection's cleanup (groups, features' disconnect hooks) runs;
4. the process exits once all are done, or after ``WS_DRAIN_TIMEOUT`` seconds.

The pieces live in ``ws_service/launcher/``.
"""

from __future__ import annotations

import sys

from ws_service.launcher.main import main

if __name__ == "__main__":
    sys.exit(main())
